"""The delivery routes file: where `clientpulse deliver` sends each RM's pushes and digests (docs/operations.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Format = Literal["generic", "wecom", "dingtalk"]
"""generic: our JSON, signed; wecom: a WeCom (企业微信) group robot; dingtalk: a DingTalk group robot."""

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """One webhook. The URL of a robot holds its key, so it may come from the environment or a file."""

    url: str | None = Field(None, pattern=r"^https?://")
    url_env: str | None = None
    url_file: str | None = None
    format: Format = "generic"
    secret_env: str | None = None
    """generic: the HMAC-SHA256 key of the body signature; dingtalk: the robot's signing secret (SEC...)."""
    secret_file: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> Target:
        given = [n for n in ("url", "url_env", "url_file") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of url, url_env, url_file")
        if self.secret_env and self.secret_file:
            raise ValueError("give at most one of secret_env, secret_file")
        return self


class Route(_Strict):
    name: Name
    rm_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1)
    """RM ids of a team; `unassigned` for the alerts without an RM."""
    targets: list[Name] = Field(min_length=1)


class RoutesFile(_Strict):
    targets: dict[Name, Target] = Field(min_length=1)
    routes: list[Route] = []
    default: list[Name] = []
    """Where the records of RMs named in no route go (none: they become dead letters `no_route`)."""

    @model_validator(mode="after")
    def _known_targets(self) -> RoutesFile:
        named = {t for r in self.routes for t in r.targets} | set(self.default)
        unknown = sorted(named - set(self.targets))
        if unknown:
            raise ValueError(f"routes name unknown targets: {', '.join(unknown)}")
        return self
