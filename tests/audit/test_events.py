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
    ({"action": "session create"}, "may only use"),
    ({"action": "x" * 200}, "'action' is not a short printable name"),
    ({"metadata": {"blob": "x" * 20000}}, "larger than"),
    ({"metadata": {"when": object()}}, "not JSON"),
    ({"event_id": "123"}, "UUIDv7"),
])
def test_invalid_events_are_refused_with_the_field_named(kw: dict[str, object],
                                                         message: str) -> None:
    # Only programming errors are refused; what a client sent is sanitised (below).
    with pytest.raises(InvalidAuditEvent, match=message):
        _event(**kw).encode()


@pytest.mark.parametrize(("kw", "field", "stored"), [
    ({"resource": "Bearer abcdefghijklmnop"}, "resource", "Bearer [redacted]"),
    ({"reason": "token=abc"}, "reason", "token=[redacted]"),
    # The regex is skipped for printable text without space, '=', ':' or 'eyJ'; these reach it.
    ({"actor": "Bearer\u2003abcdefghijklmnop"}, "actor", "Bearer\u2003[redacted]"),
    ({"actor": "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.sig"}, "actor", "[redacted]"),
    ({"resource": "item/api_key:abc"}, "resource", "item/api_key:[redacted]"),
    ({"resource": "/v1/admin/users/password:x/sessions"}, "resource",
     "/v1/admin/users/password:[redacted]/sessions"),
    ({"resource": "x" * 600}, "resource", "x" * 498 + "...[truncated]"),
    ({"reason": "y" * 5000}, "reason", "y" * 1010 + "...[truncated]"),
    ({"user_agent": "u" * 513}, "user_agent", "u" * 498 + "...[truncated]"),
])
def test_client_text_is_sanitised_and_the_event_kept(kw: dict[str, object], field: str,
                                                     stored: str) -> None:
    doc = orjson.loads(_event(**kw).encode())
    assert doc[field] == stored
    assert doc["metadata"]["sanitised"] == [field]
    again = orjson.loads(AuditEvent.decode(orjson.dumps(doc)).encode())
    assert again[field] == stored  # sanitising is idempotent: a re-encode changes nothing


def test_an_address_that_does_not_parse_is_kept_in_metadata() -> None:
    doc = orjson.loads(_event(client_ip="evil-not-an-ip\r\n", metadata={"plan": "pro"}
                              ).encode())
    assert "client_ip" not in doc
    assert doc["metadata"] == {"plan": "pro", "sanitised": ["client_ip"],
                               "client_ip_given": "evil-not-an-ip\\r\\n"}


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
