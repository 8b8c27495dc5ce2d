"""docs/openapi.yaml describes exactly what the RM API serves."""

from __future__ import annotations

from pathlib import Path

import yaml

from handlers.lifecycle import STATUSES
from schemas.alerts import ALERT_TYPES, SNOOZABLE_TYPES
from streams.api.app import create_api
from streams.api.auth import Principals
from streams.sink.store import AlertStore

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_documents_exactly_the_served_routes() -> None:
    app = create_api(AlertStore("postgresql://127.0.0.1:1/unused"), Principals([]))
    served = {
        (r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD" and r.resource
    }
    doc = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    methods = {"get", "post", "delete"}
    documented = {(method, path) for path, item in doc["paths"].items() for method in item if method in methods}
    assert served == documented
    assert doc["components"]["schemas"]["Status"]["enum"] == list(STATUSES)
    assert doc["components"]["schemas"]["AlertType"]["enum"] == list(ALERT_TYPES)
    assert doc["components"]["schemas"]["SnoozableType"]["enum"] == list(SNOOZABLE_TYPES)
    listing = {p["name"]: p for p in doc["paths"]["/api/alerts"]["get"]["parameters"]}
    assert "|".join(ALERT_TYPES) in listing["type"]["schema"]["items"]["pattern"]
