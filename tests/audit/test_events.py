"""Event schema: validation at encode/log time, CR/LF neutralised, secrets hashed, UUIDv7."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from fleetkit.audit import AuditEvent, uuid7
from fleetkit.audit.events import hash_secret
from fleetkit.errors import InvalidAuditEvent


def _event(**kw: object) -> AuditEvent:
    base: dict[str, object] = {"actor": "u1", "action": "session.create",
                               "resource": "session/9", "outcome": "success"}
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def test_uuid7_layout_and_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(1000)]
    assert len(set(ids)) == 1000
    u = uuid.UUID(ids[0])
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert abs((u.int >> 80) - before) < 1000
    assert _event().event_id[14] == "7"


def test_encode_has_column_names_and_instance() -> None:
    e = _event(client_ip="203.0.113.7", request_id="req-1", metadata={"plan": "pro"})
    doc = orjson.loads(e.encode(instance="i-1"))
    assert doc["event_id"] == e.event_id
    assert doc["instance"] == "i-1"
    assert doc["client_ip"] == "203.0.113.7"
    assert doc["metadata"] == {"plan": "pro"}
    assert AuditEvent.decode(e.encode()).event_id == e.event_id


@pytest.mark.parametrize(("kw", "message"), [
    ({"actor": ""}, "'actor' must not be empty"),
    ({"actor": None}, "'actor' is required"),
    ({"outcome": "maybe"}, "outcome must be one of"),
    ({"client_ip": "not-an-ip"}, "is not an IP address"),
    ({"action": "session create"}, "may only use"),
    ({"resource": "x" * 600}, "longer than 512"),
    ({"metadata": {"blob": "x" * 20000}}, "larger than"),
    ({"metadata": {"when": object()}}, "not JSON"),
    ({"resource": "Bearer abcdefghijklmnop"}, "looks like a credential"),
    ({"reason": "token=abc"}, "looks like a credential"),
    # The regex is skipped for printable text without space, '=', ':' or 'eyJ'; these reach it.
    ({"actor": "Bearer\u2003abcdefghijklmnop"}, "looks like a credential"),
    ({"actor": "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.sig"}, "looks like a credential"),
    ({"resource": "item/api_key:abc"}, "looks like a credential"),
    ({"event_id": "123"}, "UUIDv7"),
])
def test_invalid_events_are_refused_with_the_field_named(kw: dict[str, object],
                                                         message: str) -> None:
    with pytest.raises(InvalidAuditEvent, match=message):
        _event(**kw).encode()


def test_cr_lf_neutralised() -> None:
    doc = orjson.loads(_event(actor="u1\r\nFAKE LOG LINE", user_agent="x\ny").encode())
    assert doc["actor"] == "u1\\r\\nFAKE LOG LINE"
    assert doc["user_agent"] == "x\\ny"


def test_secrets_in_metadata_are_hashed() -> None:
    meta = {"password": "hunter2", "nested": {"session_id": "abc"}, "Authorization": "x",
            "note": "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.sig", "plan": "pro"}
    doc = orjson.loads(_event(metadata=meta).encode())["metadata"]
    assert doc["password"] == hash_secret("hunter2")
    assert doc["nested"]["session_id"] == hash_secret("abc")
    assert doc["Authorization"].startswith("sha256:")
    assert doc["note"].startswith("sha256:")
    assert doc["plan"] == "pro"
    assert "hunter2" not in orjson.dumps(doc).decode()
    # Keys found safe once are remembered: a secret-named key is still caught afterwards.
    for _ in range(2):
        again = orjson.loads(_event(metadata={"plan": "pro", "api_key": "k1"}).encode())
        assert again["metadata"] == {"plan": "pro", "api_key": hash_secret("k1")}
