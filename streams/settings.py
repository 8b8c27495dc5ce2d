"""Typed configuration from the environment; a bad value fails at start naming the variable."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import topics
from schemas.errors import error_texts

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP"), min_length=1)
    # ---- Kafka connection security: every client of every process (worker, sink, topics, simulate, demo,
    # bench, redrive) is built from these by streams/kafka_client.py. Secrets come from the variable or
    # from a file (*_FILE, e.g. a mounted Secret); they are SecretStr, so never in a repr, a log or an error.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_ssl_ca_file: Path | None = Field(None, validation_alias=_env("KAFKA_SSL_CA_FILE"))
    kafka_ssl_cert_file: Path | None = Field(None, validation_alias=_env("KAFKA_SSL_CERT_FILE"))
    kafka_ssl_key_file: Path | None = Field(None, validation_alias=_env("KAFKA_SSL_KEY_FILE"))
    kafka_ssl_key_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SSL_KEY_PASSWORD"))
    kafka_ssl_key_password_file: Path | None = Field(None, validation_alias=_env("KAFKA_SSL_KEY_PASSWORD_FILE"))
    kafka_ssl_check_hostname: bool = Field(True, validation_alias=_env("KAFKA_SSL_CHECK_HOSTNAME"))
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        "PLAIN", validation_alias=_env("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD"))
    kafka_sasl_password_file: Path | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD_FILE"))
    kafka_sasl_oauth_token_file: Path | None = Field(None, validation_alias=_env("KAFKA_SASL_OAUTH_TOKEN_FILE"))
    kafka_connect_timeout: float = Field(30.0, validation_alias=_env("KAFKA_CONNECT_TIMEOUT"), gt=0, le=3600)
    # ---- end of the Kafka connection block
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    rules_path: Path = Field(DEFAULT_RULES, validation_alias=_env("CLIENTPULSE_RULES"))
    topic_prefix: str = Field("", validation_alias=_env("CLIENTPULSE_TOPIC_PREFIX"), pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(8, validation_alias=_env("CLIENTPULSE_PARTITIONS"), ge=1, le=1024)
    replication_factor: int = Field(1, validation_alias=_env("CLIENTPULSE_REPLICATION"), ge=1, le=7)
    app_id: str = Field("clientpulse", validation_alias=_env("CLIENTPULSE_APP_ID"), pattern=r"^[A-Za-z0-9._-]+$")
    # ---- shadow run (docs/operations.md, "Shadow run"): a worker with candidate rules beside the live ones
    shadow: bool = Field(
        False,
        validation_alias=_env("CLIENTPULSE_SHADOW"),
        description="Run `clientpulse worker` as a shadow (also `clientpulse worker --shadow`): the rules of "
        "`CLIENTPULSE_RULES` on the live input, in a consumer group of its own, alerts to "
        "`CLIENTPULSE_SHADOW_ALERTS_TOPIC` only; no dead letters, no snapshots, nothing the notifier, sink or "
        "deliver read. `CLIENTPULSE_APP_ID` stays the live one (the shadow checks it is not joining it).",
    )
    shadow_app_id: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_SHADOW_APP_ID"),
        pattern=r"^[A-Za-z0-9._-]+$",
        description="A shadow's Faust application id: its consumer group, changelogs and tick topic. Unset: "
        "`<CLIENTPULSE_APP_ID>-shadow`. A shadow refuses to start with an id of the live deployment.",
    )
    shadow_alerts_topic_name: str = Field(
        topics.SHADOW_ALERTS,
        validation_alias=_env("CLIENTPULSE_SHADOW_ALERTS_TOPIC"),
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Where a shadow publishes its alerts (the topic prefix goes in front, as for every topic); "
        "`clientpulse topics` creates it. A shadow refuses to start with a topic of the live deployment.",
    )
    shadow_start: Literal["earliest", "latest"] = Field(
        "earliest",
        validation_alias=_env("CLIENTPULSE_SHADOW_START"),
        description="Where a shadow's new consumer group starts on the input topics: `earliest`, all they "
        "retain (its state and alerts cover the same history as the live workers': a fair comparison), or "
        "`latest`, only events from its start. A restarted shadow goes on from its committed offsets either way.",
    )
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

    # ---- RM API identity, browser sessions and HTTP hardening (docs/api.md, "Identity") -------------------
    api_reload_seconds: float = Field(
        5.0,
        validation_alias=_env("CLIENTPULSE_API_RELOAD_SECONDS"),
        ge=0.2,
        le=3600,
        description="How often the token file and the org file are checked for changes (they are also "
        "reloaded on SIGHUP). A file that fails to parse is logged and the previous one stays in force.",
    )
    org_file: Path | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_ORG_FILE"),
        description="Org file (YAML `managers: {name: [rm ids]}`): the team of a manager whose identity "
        "provider has no team claim (or whose token entry lists none). Reloaded like the token file.",
    )
    oidc_issuer: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_OIDC_ISSUER"),
        description="OpenID Connect issuer URL (discovery at `<issuer>/.well-known/openid-configuration`). "
        "Unset: no single sign-on, API tokens only.",
    )
    oidc_client_id: str | None = Field(
        None, validation_alias=_env("CLIENTPULSE_OIDC_CLIENT_ID"), description="Client id registered at the issuer."
    )
    oidc_client_secret: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_OIDC_CLIENT_SECRET"),
        description="Client secret (client_secret_basic at the token endpoint); keep it in a Secret.",
    )
    oidc_redirect_url: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_OIDC_REDIRECT_URL"),
        description="The callback URL as browsers reach it, ending in `/signin/oidc/callback` "
        "(registered at the issuer).",
    )
    oidc_scopes: str = Field(
        "openid profile",
        validation_alias=_env("CLIENTPULSE_OIDC_SCOPES"),
        description="Scopes asked for at sign-in, space-separated (must include `openid`).",
    )
    oidc_provider_name: str = Field(
        "single sign-on",
        validation_alias=_env("CLIENTPULSE_OIDC_PROVIDER_NAME"),
        min_length=1,
        max_length=60,
        description='Shown on the sign-in page: "Sign in with <name>".',
    )
    oidc_api_audience: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_OIDC_API_AUDIENCE"),
        description="`aud` the provider's JWT access tokens carry for this API. Set: API clients may send them "
        "as bearer tokens. Unset: only API tokens are accepted as bearer tokens.",
    )
    oidc_clock_skew: float = Field(
        60.0,
        validation_alias=_env("CLIENTPULSE_OIDC_CLOCK_SKEW"),
        ge=0,
        le=600,
        description="Seconds of clock difference tolerated on `exp`, `nbf` and `iat`.",
    )
    oidc_algorithms: str = Field(
        "RS256,PS256,ES256,EdDSA",
        validation_alias=_env("CLIENTPULSE_OIDC_ALGORITHMS"),
        description="JWS algorithms accepted on ID and access tokens, comma-separated (never `none` or HS*).",
    )
    oidc_jwks_min_refresh_seconds: float = Field(
        5.0,
        validation_alias=_env("CLIENTPULSE_OIDC_JWKS_MIN_REFRESH_SECONDS"),
        ge=0,
        le=3600,
        description="A token signed with an unknown key id refetches the provider's keys (rotation), "
        "at most this often.",
    )
    oidc_name_claim: str = Field(
        "preferred_username",
        validation_alias=_env("CLIENTPULSE_OIDC_NAME_CLAIM"),
        min_length=1,
        description="Claim naming the person (audit trail actor, org file key); `sub` when absent.",
    )
    oidc_role_claim: str = Field(
        "clientpulse_role",
        validation_alias=_env("CLIENTPULSE_OIDC_ROLE_CLAIM"),
        min_length=1,
        description="Claim holding the role: a string or a list (e.g. groups), mapped by CLIENTPULSE_OIDC_ROLE_MAP.",
    )
    oidc_role_map: str = Field(
        "rm=rm,manager=manager,ops=ops",
        validation_alias=_env("CLIENTPULSE_OIDC_ROLE_MAP"),
        description="Claim value to role, `value=role` pairs comma-separated (roles: rm, manager, ops). "
        "A person whose values map to no role, or to two, is refused.",
    )
    oidc_rm_id_claim: str = Field(
        "rm_id",
        validation_alias=_env("CLIENTPULSE_OIDC_RM_ID_CLAIM"),
        min_length=1,
        description="Claim with the RM id of an `rm`.",
    )
    oidc_team_claim: str = Field(
        "team",
        validation_alias=_env("CLIENTPULSE_OIDC_TEAM_CLAIM"),
        min_length=1,
        description="Claim with a manager's RM ids (a list); without it, the org file decides.",
    )
    session_cookie_secure: bool = Field(
        True,
        validation_alias=_env("CLIENTPULSE_SESSION_COOKIE_SECURE"),
        description="Mark the session cookie `Secure` (sent over HTTPS only) and use the `__Host-` name. "
        "`false` only for plain-HTTP demos.",
    )
    session_idle_seconds: float = Field(
        1800.0,
        validation_alias=_env("CLIENTPULSE_SESSION_IDLE_SECONDS"),
        ge=60,
        le=86400,
        description="A browser session unused this long ends.",
    )
    session_absolute_seconds: float = Field(
        43200.0,
        validation_alias=_env("CLIENTPULSE_SESSION_ABSOLUTE_SECONDS"),
        ge=300,
        le=604800,
        description="A browser session ends this long after sign-in, however active.",
    )
    auth_failure_burst: int = Field(
        10,
        validation_alias=_env("CLIENTPULSE_AUTH_FAILURE_BURST"),
        ge=1,
        le=10_000,
        description="Failed authentications one client address may make before it is refused (429).",
    )
    auth_failure_per_minute: float = Field(
        30.0,
        validation_alias=_env("CLIENTPULSE_AUTH_FAILURE_PER_MINUTE"),
        gt=0,
        le=100_000,
        description="Rate at which a client address earns new attempts after its burst.",
    )
    auth_global_failure_burst: int = Field(
        200,
        validation_alias=_env("CLIENTPULSE_AUTH_GLOBAL_FAILURE_BURST"),
        ge=1,
        le=1_000_000,
        description="Failed authentications from all addresses together before new ones are refused (429).",
    )
    auth_global_failure_per_minute: float = Field(
        1200.0,
        validation_alias=_env("CLIENTPULSE_AUTH_GLOBAL_FAILURE_PER_MINUTE"),
        gt=0,
        le=10_000_000,
        description="Rate at which the global budget of failed authentications refills.",
    )
    auth_queue_size: int = Field(
        16,
        validation_alias=_env("CLIENTPULSE_AUTH_QUEUE_SIZE"),
        ge=1,
        le=10_000,
        description="API token checks (scrypt) waiting at once; more are refused with 429 until one finishes.",
    )
    api_trusted_proxies: int = Field(
        0,
        validation_alias=_env("CLIENTPULSE_API_TRUSTED_PROXIES"),
        ge=0,
        le=10,
        description="Reverse proxies in front of the sink that append to `X-Forwarded-For`: the client address "
        "used for rate limits is that many entries from the right. 0: the TCP peer.",
    )
    api_header_timeout: float = Field(
        10.0,
        validation_alias=_env("CLIENTPULSE_API_HEADER_TIMEOUT"),
        gt=0,
        le=300,
        description="Seconds a client has to send a request's headers once it started; then 408 and close.",
    )
    api_body_timeout: float = Field(
        10.0,
        validation_alias=_env("CLIENTPULSE_API_BODY_TIMEOUT"),
        gt=0,
        le=300,
        description="Seconds a client has to send a request body; then 408.",
    )
    workbench_poll_seconds: float = Field(
        10.0,
        validation_alias=_env("CLIENTPULSE_WORKBENCH_POLL_SECONDS"),
        ge=0.2,
        le=600,
        description="How often an open inbox page asks for new alerts.",
    )
    escalation_seconds: float = Field(
        60.0,
        validation_alias=_env("CLIENTPULSE_ESCALATION_SECONDS"),
        ge=0.2,
        le=3600,
        description="How often the sink escalates open alerts past their due_by (each sink; safe with several).",
    )
    sink_batch_size: int = Field(500, validation_alias=_env("CLIENTPULSE_SINK_BATCH_SIZE"), ge=1, le=100_000)
    sink_backoff_max: float = Field(5.0, validation_alias=_env("CLIENTPULSE_SINK_BACKOFF_MAX"), gt=0, le=300)
    workbench_url: str = Field(
        "http://localhost:8080",
        validation_alias=_env("CLIENTPULSE_WORKBENCH_URL"),
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the workbench (the sink's HTTP port) as RMs reach it: links in pushes and digests "
        "point at `<this>/alerts/<alert_id>`.",
    )
    deliver_url: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_DELIVER_URL"),
        pattern=r"^https?://[^\s]+$",
        description="`clientpulse deliver`: one webhook for every push and digest (else a routes file). It may "
        "hold a robot's key: keep it in a Secret.",
    )
    deliver_format: Literal["generic", "wecom", "dingtalk"] = Field(
        "generic",
        validation_alias=_env("CLIENTPULSE_DELIVER_FORMAT"),
        description="Message format of `CLIENTPULSE_DELIVER_URL`: our signed JSON, a WeCom (企业微信) group robot, "
        "or a DingTalk group robot.",
    )
    deliver_secret: str | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_DELIVER_SECRET"),
        description="Shared secret of `CLIENTPULSE_DELIVER_URL`: generic, the HMAC-SHA256 key of the body "
        "signature; dingtalk, the robot's signing secret.",
    )
    deliver_secret_file: Path | None = Field(
        None, validation_alias=_env("CLIENTPULSE_DELIVER_SECRET_FILE"), description="The same secret, read from a file."
    )
    deliver_routes_file: Path | None = Field(
        None,
        validation_alias=_env("CLIENTPULSE_DELIVER_ROUTES_FILE"),
        description="Routes file (YAML): named targets (URL, format, secret) and which RMs or teams go to which "
        "(docs/operations.md, Delivery). Wins over `CLIENTPULSE_DELIVER_URL`.",
    )
    deliver_timeout: float = Field(
        10.0,
        validation_alias=_env("CLIENTPULSE_DELIVER_TIMEOUT"),
        gt=0,
        le=120,
        description="Seconds one delivery attempt may take before it counts as a timeout (and is retried).",
    )
    deliver_attempts: int = Field(
        6,
        validation_alias=_env("CLIENTPULSE_DELIVER_ATTEMPTS"),
        ge=1,
        le=50,
        description="Attempts per record and endpoint before it becomes a dead letter with the last answer.",
    )
    deliver_backoff_initial: float = Field(
        1.0,
        validation_alias=_env("CLIENTPULSE_DELIVER_BACKOFF_INITIAL"),
        gt=0,
        le=60,
        description="Wait before the second attempt, in seconds; doubled for each further one.",
    )
    deliver_backoff_max: float = Field(
        60.0,
        validation_alias=_env("CLIENTPULSE_DELIVER_BACKOFF_MAX"),
        gt=0,
        le=3600,
        description="Longest wait between two attempts, in seconds (also caps a `Retry-After`).",
    )
    deliver_concurrency: int = Field(
        8,
        validation_alias=_env("CLIENTPULSE_DELIVER_CONCURRENCY"),
        ge=1,
        le=256,
        description="RMs whose records are delivered at the same time (one RM's records go in order).",
    )

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
    def controls_topic(self) -> str:
        return self.topic(topics.CONTROLS)

    @property
    def alerts_topic(self) -> str:
        return self.topic(topics.ALERTS)

    @property
    def deadletter_topic(self) -> str:
        return self.topic(topics.DEADLETTER)

    @property
    def redriven_topic(self) -> str:
        """Compacted ledger of the dead letters `clientpulse redrive` published again (so each goes once)."""
        return self.topic(topics.REDRIVEN)

    @property
    def snapshots_topic(self) -> str:
        return self.topic(topics.SNAPSHOTS)

    @property
    def notifications_topic(self) -> str:
        return self.topic(topics.NOTIFICATIONS)

    @property
    def digests_topic(self) -> str:
        return self.topic(topics.DIGESTS)

    @property
    def alerts_by_rm_topic(self) -> str:
        return self.topic(f"{self.app_id}.{topics.ALERTS_BY_RM_SUFFIX}")

    @property
    def notifier_app_id(self) -> str:
        """The notifier's Faust application id: its consumer group and the prefix of its changelogs."""
        return f"{self.app_id}-notifier"

    @property
    def worker_app_id(self) -> str:
        """The worker's Faust application id: its consumer group, and the prefix of its changelogs and ticks.

        The live workers' is `app_id`; a shadow's is its own, so that it never joins the live group.
        """
        if not self.shadow:
            return self.app_id
        return self.shadow_app_id or f"{self.app_id}-shadow"

    @property
    def shadow_alerts_topic(self) -> str:
        """A shadow worker's alerts (candidate rules on live input); nothing reads it but a comparison."""
        return self.topic(self.shadow_alerts_topic_name)

    @property
    def worker_alerts_topic(self) -> str:
        """Where this worker publishes its alerts: the live alerts topic, or a shadow's own."""
        return self.shadow_alerts_topic if self.shadow else self.alerts_topic

    @property
    def ticks_topic(self) -> str:
        """This worker's clock ticks (`<worker app id>.ticks.v1`): a shadow ticks its own partitions."""
        return self.topic(f"{self.worker_app_id}.{topics.TICKS_SUFFIX}")

    @property
    def live_consumer_groups(self) -> dict[str, str]:
        """The consumer groups of the live deployment, each with what it is (a shadow must join none)."""
        return {
            self.app_id: "the live workers' group (CLIENTPULSE_APP_ID)",
            self.notifier_app_id: "the notifier's group",
            f"{self.app_id}-sink": "the sink's group",
            f"{self.app_id}-deliver": "deliver's group",
        }

    @property
    def live_topics(self) -> dict[str, str]:
        """The topics the live deployment reads or writes, each with what it holds (a shadow writes none)."""
        return {
            self.transactions_topic: "an input topic",
            self.interactions_topic: "an input topic",
            self.clients_topic: "an input topic",
            self.controls_topic: "the controls topic (an input)",
            self.alerts_topic: "the alerts topic",
            self.deadletter_topic: "the dead-letter topic",
            self.snapshots_topic: "the snapshot topic",
            self.redriven_topic: "the redrive ledger",
            self.notifications_topic: "the push topic",
            self.digests_topic: "the digest topic",
            self.alerts_by_rm_topic: "the notifier's input topic",
            self.topic(f"{self.app_id}.{topics.TICKS_SUFFIX}"): "the workers' tick topic",
        }

    @property
    def input_topics(self) -> tuple[str, str, str, str]:
        """What the workers consume (co-partitioned by client_id): the bank's three topics and the controls."""
        return (self.transactions_topic, self.interactions_topic, self.clients_topic, self.controls_topic)


ENV_NAMES: dict[str, str] = {
    name: str(field.validation_alias.choices[0])  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items()
}
"""Environment variable of each setting (used by docs and deployment checks)."""


class ConfigError(SystemExit):
    """Raised at start-up; the message names the variable and the problem."""


def shadow_conflicts(settings: Settings) -> list[str]:
    """Why these settings would let a shadow worker touch the live deployment (empty: they would not).

    A shadow in a live consumer group would take partitions from the live
    processes (and commit their offsets); a shadow writing a live topic would
    reach RMs, the store or the re-drive ledger.
    """
    if not settings.shadow:
        return []
    problems = []
    app_id, groups = settings.worker_app_id, settings.live_consumer_groups
    if app_id in groups:
        problems.append(
            f"clientpulse: shadow mode ({ENV_NAMES['shadow']}): the shadow's application id {app_id} "
            f"({ENV_NAMES['shadow_app_id']}) is {groups[app_id]}: the shadow would join it and take partitions "
            f"from the live processes; unset {ENV_NAMES['shadow_app_id']} (then {settings.app_id}-shadow) or "
            "choose an id of its own"
        )
    topic, live = settings.shadow_alerts_topic, settings.live_topics
    if topic in live:
        problems.append(
            f"clientpulse: shadow mode ({ENV_NAMES['shadow']}): the shadow's alerts topic {topic} "
            f"({ENV_NAMES['shadow_alerts_topic_name']}) is {live[topic]} of the live deployment; a shadow writes "
            f"only a topic of its own: unset {ENV_NAMES['shadow_alerts_topic_name']} "
            f"(then {settings.topic(topics.SHADOW_ALERTS)}) or choose another"
        )
    return problems


def check_shadow(settings: Settings) -> None:
    """Stop a shadow worker (exit 2) before it connects when it would touch the live deployment."""
    problems = shadow_conflicts(settings)
    if problems:
        raise ConfigError("\n".join(problems))


def refuse_shadow(settings: Settings, command: str) -> None:
    """Only the worker has a shadow mode: a shadow run has no notifier, sink or deliver of its own."""
    if settings.shadow:
        raise ConfigError(
            f"clientpulse: {ENV_NAMES['shadow']} is set, but `clientpulse {command}` has no shadow mode: a shadow "
            f"run is a worker only (its alerts go to {settings.shadow_alerts_topic}, which nothing else reads); "
            f"unset {ENV_NAMES['shadow']} for the {command}"
        )


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment; `overrides` (setting names, e.g. from command options) win over it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = error_texts(exc, whole="?", locate=_env_of, with_input=True)
        raise ConfigError("clientpulse: invalid configuration\n" + "\n".join(f"  {line}" for line in lines)) from None


def _env_of(loc: Sequence[Any]) -> str:
    field = str(loc[0]) if loc else "?"
    return ENV_NAMES.get(field, field)
