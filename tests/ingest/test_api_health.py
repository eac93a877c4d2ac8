from __future__ import annotations

from fastapi.testclient import TestClient

from ingest.api import create_app
from ingest.settings import Settings


def test_health_reports_database_broker_and_lag(db, broker):
    app = create_app(Settings(_env_file=None, database_url=db, mqtt_url=broker.url))
    with TestClient(app) as client:
        body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["broker"]["status"] == "ok"
    assert body["storage_mode"] == "plain"
    assert body["ingest"]["last_received_at"] is None


def test_health_is_503_when_the_broker_is_down(db):
    app = create_app(Settings(_env_file=None, database_url=db, mqtt_url="mqtt://127.0.0.1:1"))
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["broker"]["status"] == "down"


def test_openapi_is_served(db):
    app = create_app(Settings(_env_file=None, database_url=db))
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
    assert "/health" in spec["paths"]
