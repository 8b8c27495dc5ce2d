"""What `clientpulse deliver` sends for a push or a digest, how it signs it, and what an answer means.

Pure: the service (streams/deliver) does the HTTP and Kafka. Three formats:

- `generic`: our JSON (docs/operations.md, "Delivery"), with an idempotency key
  and, given a secret, an HMAC-SHA256 signature over the timestamp and the body;
- `wecom`: a WeCom (企业微信) group robot's markdown message
  (`{"msgtype": "markdown", "markdown": {"content": ...}}`, at most 4,096 bytes);
- `dingtalk`: a DingTalk group robot's markdown message
  (`{"msgtype": "markdown", "markdown": {"title", "text"}}`); with the robot's
  signing secret the URL carries `timestamp` (ms) and `sign` =
  base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>")).

Robots answer HTTP 200 with `{"errcode": 0}` on success; another errcode is a
failure, retried only for their rate limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import orjson

from schemas.delivery import Format

WECOM_MAX_BYTES = 4096
DIGEST_LINES = 10
"""Alerts listed by name in a robot's digest message (all of them in the generic body)."""
ROBOT_RATE_LIMITED = frozenset({45009, 130101})
"""errcodes of WeCom ("api freq out of limit") and DingTalk ("send too fast"): retried."""
SIGNATURE_HEADER = "X-Clientpulse-Signature"
TIMESTAMP_HEADER = "X-Clientpulse-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SEVERITY_ZH = {"critical": "紧急", "warning": "警告", "info": "提示"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A target of the routes file with its URL and secret resolved."""

    name: str
    url: str
    format: Format
    secret: bytes | None = None

    def __repr__(self) -> str:  # URLs of robots hold their key; secrets never print
        return f"Endpoint({self.name!r}, {self.format})"


class Router:
    """Which endpoints get the records of an RM (or of `unassigned`)."""

    def __init__(self, routes: dict[str, list[Endpoint]], default: list[Endpoint]) -> None:
        self.routes = routes
        self.default = default

    def endpoints(self, rm_key: str) -> list[Endpoint]:
        return self.routes.get(rm_key, self.default)

    @property
    def all(self) -> list[Endpoint]:
        seen: dict[str, Endpoint] = {e.name: e for e in self.default}
        for endpoints in self.routes.values():
            seen.update({e.name: e for e in endpoints})
        return list(seen.values())


def record_id(record: dict[str, Any]) -> str:
    """The idempotency key: the alert id of a push, the digest id of a digest, the push id of an escalation."""
    if record["kind"] == "escalation":
        return str(record["push_id"])
    return str(record["alert_id"] if record["kind"] == "push" else record["digest_id"])


def recipient(record: dict[str, Any]) -> str | None:
    """Whose route a record takes: the RM of a push or digest, the manager of an escalation (None: unassigned)."""
    if record["kind"] == "escalation":
        return record.get("manager") or None
    return record.get("rm_id") or None


def alert_link(workbench_url: str, alert_id: str) -> str:
    return f"{workbench_url.rstrip('/')}/alerts/{alert_id}"


def _titles(alert: dict[str, Any]) -> dict[str, str]:
    titles = dict(alert.get("titles") or {})
    titles.setdefault("en", str(alert.get("title", "")))
    return titles


def _local(text: str, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(text).astimezone(tz).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------- bodies
def generic_body(record: dict[str, Any], workbench_url: str) -> dict[str, Any]:
    if record["kind"] == "escalation":
        return {
            "id": record["push_id"],
            "kind": "escalation",
            "manager": record["manager"],
            "rm_id": record["rm_id"],
            "alert_id": record["alert_id"],
            "priority": record["priority"],
            "type": record["type"],
            "severity": record["severity"],
            "client_id": record["client_id"],
            "occurred_at": record["occurred_at"],
            "due_by": record["due_by"],
            "escalated_at": record["escalated_at"],
            "title": record["title"],
            "link": alert_link(workbench_url, record["alert_id"]),
        }
    if record["kind"] == "push":
        alert = record["alert"]
        return {
            "id": record["alert_id"],
            "kind": "push",
            "rm_id": record["rm_id"],
            "reason": record.get("reason"),
            "alert_id": record["alert_id"],
            "priority": record["priority"],
            "type": alert["type"],
            "severity": alert["severity"],
            "client_id": alert["client_id"],
            "occurred_at": alert["occurred_at"],
            "title": alert["title"],
            "titles": _titles(alert),
            "link": alert_link(workbench_url, record["alert_id"]),
        }
    return {
        "id": record["digest_id"],
        "kind": "digest",
        "rm_id": record["rm_id"],
        "due_at": record["due_at"],
        "count": len(record["alert_ids"]),
        "counts": record["counts"],
        "alerts": [
            {
                "alert_id": a["alert_id"],
                "priority": a["priority"],
                "type": a["type"],
                "severity": a["severity"],
                "client_id": a["client_id"],
                "occurred_at": a["occurred_at"],
                "title": a["title"],
                "titles": _titles(a),
                "link": alert_link(workbench_url, a["alert_id"]),
            }
            for a in record["alerts"]
        ],
    }


def _line(alert: dict[str, Any], workbench_url: str) -> str:
    titles = _titles(alert)
    zh, en = titles.get("zh-CN"), titles["en"]
    name = f"{zh} / {en}" if zh and zh != en else en
    link = alert_link(workbench_url, alert["alert_id"])
    return f"> **P{alert['priority']}** {name} ({alert['client_id']}) [查看 Open]({link})"


def robot_markdown(record: dict[str, Any], workbench_url: str, tz: ZoneInfo) -> tuple[str, str]:
    """(title, markdown text) of a robot message, in Chinese and English, within WeCom's 4,096 bytes."""
    if record["kind"] == "escalation":
        title = f"[已超时 Overdue] P{record['priority']} {record['title']}"
        link = alert_link(workbench_url, record["alert_id"])
        lines = [
            f"### 已超时 OVERDUE · P{record['priority']}",
            f"> {record['title']} ({record['client_id']}) [查看 Open]({link})",
            f"> 客户经理 RM {record['rm_id'] or '未分配 unassigned'} · 截止 due {_local(record['due_by'], tz)}",
        ]
    elif record["kind"] == "push":
        alert = record["alert"]
        severity = alert["severity"]
        title = f"[{SEVERITY_ZH.get(severity, severity)}] P{record['priority']} {_titles(alert)['en']}"
        lines = [
            f"### {SEVERITY_ZH.get(severity, severity)} {severity.upper()} · P{record['priority']}",
            _line(alert, workbench_url),
            f"> {_local(alert['occurred_at'], tz)} · {alert['type']}",
        ]
    else:
        items = record["alerts"]
        title = f"每日摘要 Daily digest: {len(items)}"
        counts = ", ".join(f"{t} {n}" for t, n in record["counts"].items())
        lines = [f"### 每日摘要 Daily digest · {len(items)} 条提醒 alerts", f"> {counts}"]
        shown = items[:DIGEST_LINES]
        lines += [_line(a, workbench_url) for a in shown]
        if len(items) > len(shown):
            lines.append(f"> …另有 {len(items) - len(shown)} 条 and {len(items) - len(shown)} more")
    lines.append("clientpulse")
    text = "\n".join(lines)
    while len(text.encode()) > WECOM_MAX_BYTES and len(lines) > 3:
        lines.pop(-2)
        text = "\n".join(lines)
    return title, text.encode()[:WECOM_MAX_BYTES].decode("utf-8", "ignore")


def body(record: dict[str, Any], fmt: Format, workbench_url: str, tz: ZoneInfo) -> bytes:
    """The request body for one endpoint format."""
    if fmt == "generic":
        return orjson.dumps(generic_body(record, workbench_url))
    title, text = robot_markdown(record, workbench_url, tz)
    if fmt == "wecom":
        return orjson.dumps({"msgtype": "markdown", "markdown": {"content": text}})
    return orjson.dumps({"msgtype": "markdown", "markdown": {"title": title, "text": text}})


# ---------------------------------------------------------------------- signatures
def signature(secret: bytes, timestamp: int, payload: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>." and the body: a receiver checks both, and the age."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + payload, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def dingtalk_url(url: str, secret: bytes, now_ms: int) -> str:
    """The robot's URL with `timestamp` and `sign` (DingTalk's "加签" security setting)."""
    to_sign = f"{now_ms}\n".encode() + secret
    digest = hmac.new(secret, to_sign, hashlib.sha256).digest()
    sign = quote_plus(base64.b64encode(digest).decode())
    return f"{url}{'&' if '?' in url else '?'}timestamp={now_ms}&sign={sign}"


def request(
    record: dict[str, Any], endpoint: Endpoint, workbench_url: str, tz: ZoneInfo, now_s: int
) -> tuple[str, bytes, dict[str, str]]:
    """(URL, body, headers) of one attempt; signed afresh at each attempt."""
    payload = body(record, endpoint.format, workbench_url, tz)
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: record_id(record)}
    url = endpoint.url
    if endpoint.format == "dingtalk":
        if endpoint.secret is not None:
            url = dingtalk_url(url, endpoint.secret, now_s * 1000)
    elif endpoint.format == "generic":
        headers[TIMESTAMP_HEADER] = str(now_s)
        if endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = signature(endpoint.secret, now_s, payload)
    return url, payload, headers


# ---------------------------------------------------------------------- answers
@dataclass(frozen=True, slots=True)
class Answer:
    """What an attempt came to: delivered, worth retrying, or refused for good."""

    outcome: Literal["ok", "retry", "refused"]
    result: str
    """Metric label: ok, http_5xx, http_4xx, timeout, connection_error, rate_limited, robot_error."""
    detail: str = ""
    retry_after: float | None = None


MAX_DETAIL = 1000


def answer(fmt: Format, status: int, text: str, retry_after: str | None = None) -> Answer:
    detail = f"HTTP {status}: {text[:MAX_DETAIL]}"
    if status == 429 or status == 408 or status >= 500:
        wait = _seconds(retry_after)
        return Answer(
            "retry", "rate_limited" if status == 429 else "http_5xx" if status >= 500 else "timeout", detail, wait
        )
    if status >= 400:
        return Answer("refused", "http_4xx", detail)
    if status >= 300:
        return Answer("refused", "http_4xx", detail)
    if fmt == "generic":
        return Answer("ok", "ok")
    try:
        reply = orjson.loads(text)
        errcode = int(reply.get("errcode", -1)) if isinstance(reply, dict) else -1
    except (orjson.JSONDecodeError, ValueError, TypeError):
        errcode = -1
    if errcode == 0:
        return Answer("ok", "ok")
    if errcode in ROBOT_RATE_LIMITED:
        return Answer("retry", "rate_limited", detail)
    return Answer("refused", "robot_error", detail)


def failure(kind: Literal["timeout", "connection_error"], text: str) -> Answer:
    return Answer("retry", kind, text[:MAX_DETAIL])


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """The wait before attempt `attempt + 1` (attempt counts from 1): doubling from `initial`, at most `maximum`."""
    return float(min(maximum, initial * 2 ** (attempt - 1)))
