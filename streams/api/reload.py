"""The token file and the org file, read at start and again whenever they change or the process gets SIGHUP.

A file that cannot be read or parsed at start stops the start; later, a bad
version is logged and counted (`clientpulse_api_config_reloads_total{result="error"}`)
and the one in force stays. Changes are noticed by polling the files' stat
(which also sees a Kubernetes ConfigMap's symlink swap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from streams import metrics
from streams.api.auth import AuthConfigError, Principals, TokenEntry, parse_org_file, parse_token_config
from streams.api.identity import Teams
from streams.settings import ENV_NAMES, ConfigError, Settings

log = logging.getLogger("clientpulse.api.config")


def read_token_entries(settings: Settings) -> list[TokenEntry]:
    """Entries of CLIENTPULSE_API_TOKENS_FILE and CLIENTPULSE_API_TOKENS; ConfigError naming the source."""
    entries: list[TokenEntry] = []
    sources: list[tuple[str, str]] = []
    if settings.api_tokens_file is not None:
        env = ENV_NAMES["api_tokens_file"]
        try:
            sources.append((f"{env} ({settings.api_tokens_file})", settings.api_tokens_file.read_text("utf-8")))
        except OSError as exc:
            raise ConfigError(f"clientpulse: {env}: cannot read {settings.api_tokens_file}: {exc}") from None
    if settings.api_tokens:
        sources.append((ENV_NAMES["api_tokens"], settings.api_tokens))
    try:
        for source, text in sources:
            entries.extend(parse_token_config(text, source))
    except AuthConfigError as exc:
        raise ConfigError(f"clientpulse: {exc}") from None
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"clientpulse: API token names configured twice: {', '.join(duplicates)}")
    return entries


def read_teams(settings: Settings) -> dict[str, frozenset[str]]:
    if settings.org_file is None:
        return {}
    env = ENV_NAMES["org_file"]
    try:
        text = settings.org_file.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"clientpulse: {env}: cannot read {settings.org_file}: {exc}") from None
    try:
        return parse_org_file(text, f"{env} ({settings.org_file})")
    except AuthConfigError as exc:
        raise ConfigError(f"clientpulse: {exc}") from None


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ConfigFiles:
    """Keeps `principals` and `teams` equal to the files; `reload()` rereads both now."""

    def __init__(self, settings: Settings, principals: Principals, teams: Teams) -> None:
        self.settings = settings
        self.principals = principals
        self.teams = teams
        self._stamps = (_stamp(settings.api_tokens_file), _stamp(settings.org_file))
        self._task: asyncio.Task[None] | None = None

    def reload(self, why: str = "requested") -> None:
        self._stamps = (_stamp(self.settings.api_tokens_file), _stamp(self.settings.org_file))
        try:
            entries = read_token_entries(self.settings)
        except ConfigError as exc:
            metrics.CONFIG_RELOADS.labels(file="tokens", result="error").inc()
            log.error("token configuration not reloaded (%s), the previous one stays: %s", why, exc)
        else:
            self.principals.replace(entries)
            metrics.CONFIG_RELOADS.labels(file="tokens", result="ok").inc()
            log.info("token configuration reloaded (%s): %d token(s)", why, len(entries))
        if self.settings.org_file is not None:
            try:
                teams = read_teams(self.settings)
            except ConfigError as exc:
                metrics.CONFIG_RELOADS.labels(file="org", result="error").inc()
                log.error("org file not reloaded (%s), the previous one stays: %s", why, exc)
            else:
                self.teams.replace(teams)
                metrics.CONFIG_RELOADS.labels(file="org", result="ok").inc()
                log.info("org file reloaded (%s): %d manager(s)", why, len(teams))

    def changed(self) -> bool:
        return (_stamp(self.settings.api_tokens_file), _stamp(self.settings.org_file)) != self._stamps

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.api_reload_seconds)
            if self.changed():
                self.reload("file changed")

    def start(self) -> None:
        """Watch the files and reload on SIGHUP (call from the running loop)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload, "SIGHUP")
        if self.settings.api_tokens_file is not None or self.settings.org_file is not None:
            self._task = loop.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
