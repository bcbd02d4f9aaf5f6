import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.ingest.app import create_service
from services.ingest.connections import Connection, Connections, ConnectionsError
from services.ingest.signatures import sign_slack
from services.runtime.settings import IngestSettings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "connections.example.yaml"
PLATFORMS = ["slack", "discourse", "discord", "generic"]
ENV = {"ACME_SLACK_SIGNING_SECRET": "acme-secret", "ACME_DISCOURSE_WEBHOOK_SECRET": "d",
       "RUSTACEANS_DISCORD_PUBLIC_KEY": "00" * 32, "STEWARD_SLACK_SIGNING_SECRET": "default-secret"}


def test_the_example_file_loads_with_secrets_from_the_environment():
    connections = Connections.load(EXAMPLE, PLATFORMS, environ=ENV)
    acme = connections.get("slack", "acme")
    assert acme.secret.get_secret_value() == "acme-secret" and acme.community_id == "acme"
    assert connections.get("discourse", "acme-forum").community_id == "acme"
    # Every platform keeps a default connection fed by STEWARD_<PLATFORM>_SIGNING_SECRET.
    assert connections.get("slack", "default").secret.get_secret_value() == "default-secret"
    assert connections.get("generic", "default").secret.get_secret_value() == ""
    assert connections.get("slack", "nope") is None


def test_secrets_never_show_in_reprs_or_dumps():
    connection = Connections.load(EXAMPLE, PLATFORMS, environ=ENV).get("slack", "acme")
    assert "acme-secret" not in repr(connection) and "acme-secret" not in connection.model_dump_json()


@pytest.mark.parametrize(
    "text, environ, reason",
    [
        ("connections:\n  - {name: a, platform: slack, secret_env: MISSING}\n", {}, "MISSING is empty"),
        ("connections:\n  - {name: a, platform: myspace}\n", {}, "unknown platforms"),
        ("connections:\n  - {name: 'Bad Name', platform: slack}\n", {}, "pattern"),
        ("connections:\n  - {name: a, platform: slack}\n  - {name: a, platform: slack}\n", {}, "two connections"),
        ("connections: [", {}, "connections.yaml"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, text, environ, reason):
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    with pytest.raises(ConnectionsError, match=reason):
        Connections.load(path, PLATFORMS, environ=environ)


def signed(secret: str) -> tuple[bytes, dict]:
    body = b'{"type": "url_verification", "challenge": "c-1"}'
    now = int(time.time())
    return body, {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign_slack(secret, now, body),
                  "Content-Type": "application/json"}


def test_each_connection_checks_its_own_secret():
    connections = Connections(
        [Connection(name="acme", platform="slack", secret="acme-secret"),
         Connection(name="default", platform="slack", secret="default-secret")], environ={},
    )
    client = TestClient(create_service(IngestSettings(kafka_bootstrap="127.0.0.1:1"), connections).app)
    body, headers = signed("acme-secret")
    assert client.post("/webhooks/slack/acme", content=body, headers=headers).json() == {"challenge": "c-1"}
    assert client.post("/webhooks/slack", content=body, headers=headers).status_code == 401
    assert client.post("/webhooks/slack/other", content=body, headers=headers).status_code == 404
    assert client.post("/webhooks/myspace", content=body, headers=headers).status_code == 404
    too_big = client.post("/webhooks/slack/acme", content=b"x" * 2_000_000, headers=headers)
    assert too_big.status_code == 413
    plain = client.post("/webhooks/slack/acme", content=body, headers={**headers, "Content-Type": "text/plain"})
    assert plain.status_code == 415
