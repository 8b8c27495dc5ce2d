"""Typed configuration from the environment; a bad value fails at start naming the variable."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import topics
from schemas.errors import error_texts

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP"), min_length=1)
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    rules_path: Path = Field(DEFAULT_RULES, validation_alias=_env("CLIENTPULSE_RULES"))
    topic_prefix: str = Field("", validation_alias=_env("CLIENTPULSE_TOPIC_PREFIX"), pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(8, validation_alias=_env("CLIENTPULSE_PARTITIONS"), ge=1, le=1024)
    replication_factor: int = Field(1, validation_alias=_env("CLIENTPULSE_REPLICATION"), ge=1, le=7)
    app_id: str = Field("clientpulse", validation_alias=_env("CLIENTPULSE_APP_ID"), pattern=r"^[A-Za-z0-9._-]+$")
    web_port: int = Field(6066, validation_alias=_env("CLIENTPULSE_WEB_PORT"), ge=1, le=65535)
    web_host: str = Field("0.0.0.0", validation_alias=_env("CLIENTPULSE_WEB_HOST"))
    clock: Literal["wall", "event"] = Field("wall", validation_alias=_env("CLIENTPULSE_CLOCK"))
    tick_seconds: float = Field(5.0, validation_alias=_env("CLIENTPULSE_TICK_SECONDS"), gt=0, le=3600)
    batch_size: int = Field(5000, validation_alias=_env("CLIENTPULSE_BATCH_SIZE"), ge=1, le=100_000)
    fetch_max_wait_ms: int = Field(50, validation_alias=_env("CLIENTPULSE_FETCH_MAX_WAIT_MS"), ge=1, le=5000)
    state_cache_size: int = Field(100_000, validation_alias=_env("CLIENTPULSE_STATE_CACHE_SIZE"), ge=0, le=10_000_000)
    store: Literal["memory"] = Field("memory", validation_alias=_env("CLIENTPULSE_STORE"))
    data_dir: Path = Field(Path("./clientpulse-data"), validation_alias=_env("CLIENTPULSE_DATA_DIR"))
    session_timeout: float = Field(30.0, validation_alias=_env("CLIENTPULSE_SESSION_TIMEOUT"), ge=1, le=600)
    recovery_check: bool = Field(True, validation_alias=_env("CLIENTPULSE_RECOVERY_CHECK"))
    end_offset_probe: bool = Field(
        False,
        validation_alias=_env("CLIENTPULSE_END_OFFSET_PROBE"),
        description="Check each changelog's end offset by a fetch before table recovery trusts it. Only for "
        "brokers whose ListOffsets answers are not exact (the embedded one; the demo, tests and bench set it); "
        "Kafka needs no probe.",
    )
    log_level: str = Field("info", validation_alias=_env("CLIENTPULSE_LOG_LEVEL"))
    snapshot_seconds: float = Field(10.0, validation_alias=_env("CLIENTPULSE_SNAPSHOT_SECONDS"), gt=0)
    api_host: str = Field("0.0.0.0", validation_alias=_env("CLIENTPULSE_API_HOST"))
    api_port: int = Field(8080, validation_alias=_env("CLIENTPULSE_API_PORT"), ge=1, le=65535)
    api_tokens_file: Path | None = Field(None, validation_alias=_env("CLIENTPULSE_API_TOKENS_FILE"))
    api_tokens: str | None = Field(None, validation_alias=_env("CLIENTPULSE_API_TOKENS"))
    sink_batch_size: int = Field(500, validation_alias=_env("CLIENTPULSE_SINK_BATCH_SIZE"), ge=1, le=100_000)
    sink_backoff_max: float = Field(5.0, validation_alias=_env("CLIENTPULSE_SINK_BACKOFF_MAX"), gt=0, le=300)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def transactions_topic(self) -> str:
        return self.topic(topics.TRANSACTIONS)

    @property
    def interactions_topic(self) -> str:
        return self.topic(topics.INTERACTIONS)

    @property
    def clients_topic(self) -> str:
        return self.topic(topics.CLIENTS)

    @property
    def alerts_topic(self) -> str:
        return self.topic(topics.ALERTS)

    @property
    def deadletter_topic(self) -> str:
        return self.topic(topics.DEADLETTER)

    @property
    def snapshots_topic(self) -> str:
        return self.topic(topics.SNAPSHOTS)

    @property
    def ticks_topic(self) -> str:
        return self.topic(f"{self.app_id}.{topics.TICKS_SUFFIX}")

    @property
    def input_topics(self) -> tuple[str, str, str]:
        return (self.transactions_topic, self.interactions_topic, self.clients_topic)


ENV_NAMES: dict[str, str] = {
    name: str(field.validation_alias.choices[0])  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items()
}
"""Environment variable of each setting (used by docs and deployment checks)."""


class ConfigError(SystemExit):
    """Raised at start-up; the message names the variable and the problem."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = error_texts(exc, whole="?", locate=_env_of, with_input=True)
        raise ConfigError("clientpulse: invalid configuration\n" + "\n".join(f"  {line}" for line in lines)) from None


def _env_of(loc: Sequence[Any]) -> str:
    field = str(loc[0]) if loc else "?"
    return ENV_NAMES.get(field, field)
