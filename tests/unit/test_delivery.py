"""Delivery's pure parts: bodies, signatures, what an answer means, backoff, the routes file."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic import ValidationError

from handlers import delivery
from handlers.delivery import Endpoint
from schemas.delivery import RoutesFile

TZ = ZoneInfo("Asia/Shanghai")
WB = "https://wb.example/"


def push(priority: int = 80, titles: dict[str, str] | None = None) -> dict[str, Any]:
    alert = {
        "alert_id": "a-1",
        "type": "complaint",
        "severity": "critical",
        "client_id": "c-9",
        "occurred_at": "2026-03-02T15:00:00+00:00",
        "title": "Complaint (high severity) via branch",
        "titles": titles,
        "priority": priority,
    }
    return {"kind": "push", "rm_id": "rm-1", "alert_id": "a-1", "priority": priority, "at": alert["occurred_at"]} | {
        "reason": "critical",
        "alert": alert,
    }


def digest(n: int) -> dict[str, Any]:
    alerts = [
        {
            "alert_id": f"id-{i:05d}",
            "type": "large_outflow",
            "severity": "warning",
            "priority": 50,
            "occurred_at": "2026-03-02T15:00:00+00:00",
            "client_id": f"c-{i}",
            "title": "Outflow of 120,000.00 CNY" + " with a long title" * 5,
            "titles": {"en": "Outflow", "zh-CN": "资金流出 120,000.00 元"},
        }
        for i in range(n)
    ]
    return {
        "kind": "digest",
        "rm_id": "rm-1",
        "due_at": "2026-03-03T00:00:00+00:00",
        "alert_ids": [a["alert_id"] for a in alerts],
        "counts": {"large_outflow": n},
        "digest_id": "d-1",
        "alerts": alerts,
    }


def test_generic_bodies_carry_priority_both_titles_and_links() -> None:
    body = orjson.loads(delivery.body(push(titles={"en": "E", "zh-CN": "中"}), "generic", WB, TZ))
    assert body["id"] == "a-1" and body["priority"] == 80 and body["titles"] == {"en": "E", "zh-CN": "中"}
    assert body["link"] == "https://wb.example/alerts/a-1"
    without = orjson.loads(delivery.body(push(), "generic", WB, TZ))
    assert without["titles"] == {"en": "Complaint (high severity) via branch"}, "the title when no titles were given"
    d = orjson.loads(delivery.body(digest(3), "generic", WB, TZ))
    assert d["id"] == "d-1" and d["count"] == 3 and len(d["alerts"]) == 3


def test_robot_messages_fit_wecoms_limit_even_for_a_big_digest() -> None:
    for fmt in ("wecom", "dingtalk"):
        raw = orjson.loads(delivery.body(digest(2000), fmt, WB, TZ))  # type: ignore[arg-type]
        text = raw["markdown"]["content" if fmt == "wecom" else "text"]
        assert len(text.encode()) <= delivery.WECOM_MAX_BYTES
        assert "2000" in text and "1990 more" in text and text.endswith("clientpulse")
    wecom = orjson.loads(delivery.body(push(titles={"en": "E", "zh-CN": "中"}), "wecom", WB, TZ))
    content = wecom["markdown"]["content"]
    assert "紧急 CRITICAL · P80" in content and "中 / E" in content and "2026-03-02 23:00" in content


def test_the_generic_signature_covers_timestamp_and_body() -> None:
    endpoint = Endpoint("hub", "https://hub.example/h", "generic", b"k")
    url, body, headers = delivery.request(push(), endpoint, WB, TZ, 1_700_000_000)
    assert url == "https://hub.example/h" and headers["Idempotency-Key"] == "a-1"
    mac = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Clientpulse-Signature"] == f"sha256={mac}"
    assert headers["X-Clientpulse-Timestamp"] == "1700000000"
    unsigned = delivery.request(push(), Endpoint("hub", "https://h", "generic"), WB, TZ, 1)[2]
    assert "X-Clientpulse-Signature" not in unsigned


def test_the_dingtalk_url_is_signed_with_the_robot_secret() -> None:
    endpoint = Endpoint("d", "https://oapi.dingtalk.com/robot/send?access_token=T", "dingtalk", b"SECxyz")
    url, _, headers = delivery.request(push(), endpoint, WB, TZ, 1_700_000_000)
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["T"] and query["timestamp"] == ["1700000000000"]
    expected = base64.b64encode(hmac.new(b"SECxyz", b"1700000000000\nSECxyz", hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected] and unquote_plus(url.split("sign=")[1]) == expected
    assert "X-Clientpulse-Signature" not in headers


@pytest.mark.parametrize(
    ("fmt", "status", "text", "outcome", "result"),
    [
        ("generic", 200, "", "ok", "ok"),
        ("generic", 204, "", "ok", "ok"),
        ("generic", 500, "boom", "retry", "http_5xx"),
        ("generic", 503, "busy", "retry", "http_5xx"),
        ("generic", 429, "", "retry", "rate_limited"),
        ("generic", 408, "", "retry", "timeout"),
        ("generic", 400, "bad", "refused", "http_4xx"),
        ("generic", 404, "", "refused", "http_4xx"),
        ("wecom", 200, '{"errcode": 0, "errmsg": "ok"}', "ok", "ok"),
        ("wecom", 200, '{"errcode": 45009}', "retry", "rate_limited"),
        ("wecom", 200, '{"errcode": 93000}', "refused", "robot_error"),
        ("dingtalk", 200, '{"errcode": 130101}', "retry", "rate_limited"),
        ("dingtalk", 200, '{"errcode": 310000, "errmsg": "sign not match"}', "refused", "robot_error"),
        ("dingtalk", 200, "<html>", "refused", "robot_error"),
    ],
)
def test_what_an_answer_means(fmt: Any, status: int, text: str, outcome: str, result: str) -> None:
    answer = delivery.answer(fmt, status, text)
    assert (answer.outcome, answer.result) == (outcome, result)
    if outcome != "ok":
        assert f"HTTP {status}" in answer.detail


def test_retry_after_and_backoff() -> None:
    assert delivery.answer("generic", 429, "", "7").retry_after == 7.0
    assert delivery.answer("generic", 503, "", "soon").retry_after is None
    assert [delivery.backoff(a, 0.5, 3) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_routes_file_names_known_targets_and_one_url_each() -> None:
    good = RoutesFile.model_validate(
        {
            "targets": {"hub": {"url": "https://hub"}, "east": {"url_env": "EAST_URL", "format": "wecom"}},
            "routes": [{"name": "east", "rm_ids": ["rm-1"], "targets": ["east"]}],
            "default": ["hub"],
        }
    )
    assert good.targets["east"].format == "wecom"
    with pytest.raises(ValidationError, match="unknown targets: west"):
        RoutesFile.model_validate({"targets": {"hub": {"url": "https://h"}}, "default": ["west"]})
    with pytest.raises(ValidationError, match="exactly one of url"):
        RoutesFile.model_validate({"targets": {"hub": {"url": "https://h", "url_env": "X"}}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        RoutesFile.model_validate({"targets": {"hub": {"url": "https://h", "secret": "inline"}}})


def test_an_endpoint_never_prints_its_url_or_secret() -> None:
    text = repr(Endpoint("east", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K123", "wecom", b"S"))
    assert "K123" not in text and "S'" not in text


def test_the_idempotency_key_is_the_alert_or_digest_id() -> None:
    assert delivery.record_id(push()) == "a-1" and delivery.record_id(digest(1)) == "d-1"


def test_deliver_configuration_errors_name_the_setting(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.deliver.service import load_router
    from streams.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match=r"CLIENTPULSE_DELIVER_URL.*CLIENTPULSE_DELIVER_ROUTES_FILE"):
        load_router(Settings())
    routes = tmp_path / "routes.yaml"
    routes.write_text("targets: {hub: {url: 'https://h'}}\ndefault: [west]\n")
    with pytest.raises(ConfigError, match=r"CLIENTPULSE_DELIVER_ROUTES_FILE \(.*routes.yaml\): invalid"):
        load_router(Settings(deliver_routes_file=routes))
    routes.write_text("targets: {east: {url_env: NO_SUCH_VARIABLE_SET, format: wecom}}\ndefault: [east]\n")
    monkeypatch.delenv("NO_SUCH_VARIABLE_SET", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_VARIABLE_SET is not set"):
        load_router(Settings(deliver_routes_file=routes))
    monkeypatch.setenv("EAST_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    routes.write_text(
        "targets: {east: {url_env: EAST_URL, format: wecom}, hub: {url: 'https://hub'}}\n"
        "routes: [{name: east, rm_ids: [rm-1, rm-2], targets: [east, hub]}]\ndefault: [hub]\n"
    )
    router = load_router(Settings(deliver_routes_file=routes))
    assert [e.name for e in router.endpoints("rm-2")] == ["east", "hub"]
    assert [e.name for e in router.endpoints("rm-9")] == ["hub"]
    assert router.endpoints("rm-1")[0].url.endswith("key=k")
    one = load_router(Settings(deliver_url="https://hook", deliver_secret="s", deliver_format="dingtalk"))
    assert [(e.name, e.format, e.secret) for e in one.all] == [("default", "dingtalk", b"s")]


def test_an_escalation_goes_to_the_manager_with_its_own_id_and_a_link() -> None:
    from datetime import datetime, timedelta

    from schemas.notifications import EscalationPush

    at = datetime(2026, 3, 1, 10, tzinfo=ZoneInfo("UTC"))
    push = EscalationPush(
        push_id="escalation:a-9:maria", manager="maria", rm_id="rm-7", alert_id="a-9", type="complaint",
        severity="critical", priority=90, client_id="c-1", title="Complaint (high severity) via branch",
        occurred_at=at, due_by=at + timedelta(hours=24), escalated_at=at + timedelta(hours=25),
    )  # fmt: skip
    record = orjson.loads(push.model_dump_json())
    assert delivery.record_id(record) == "escalation:a-9:maria"
    assert delivery.recipient(record) == "maria" and delivery.recipient({**record, "manager": None}) is None
    generic = orjson.loads(delivery.body(record, "generic", WB, TZ))
    assert (generic["id"], generic["kind"], generic["manager"], generic["link"]) == (
        "escalation:a-9:maria",
        "escalation",
        "maria",
        "https://wb.example/alerts/a-9",
    )
    robot = orjson.loads(delivery.body(record, "wecom", WB, TZ))["markdown"]["content"]
    assert "OVERDUE" in robot and "rm-7" in robot and "https://wb.example/alerts/a-9" in robot
    assert delivery.recipient({"kind": "push", "rm_id": "rm-7"}) == "rm-7"
