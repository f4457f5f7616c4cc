from __future__ import annotations

import pytest

from fleetkit.ratelimit import Limit, parse_limits


@pytest.mark.parametrize(("text", "amount", "window"), [
    ("100/minute", 100, 60), ("10 per 1 second", 10, 1), ("5/10s", 5, 10),
    ("1000 per hour", 1000, 3600), ("7/day", 7, 86400), ("3 per 2 minutes", 3, 120),
])
def test_parse(text: str, amount: int, window: float) -> None:
    limit = Limit.parse(text)
    assert (limit.amount, limit.window, limit.window_ms) == (amount, window, window * 1000)


@pytest.mark.parametrize("text", ["", "100", "ten/minute", "0/second", "5/fortnight", "-1/s"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Limit.parse(text)


def test_policy_lists_and_names() -> None:
    limits = parse_limits("20/second; 1000/hour")
    assert [str(x) for x in limits] == ["20/1s", "1000/3600s"]
    assert limits[0].name == "20-per-1s"
    assert Limit.parse("5/minute", name="login").name == "login"
    assert parse_limits(limits[0]) == (limits[0],)
    with pytest.raises(ValueError):
        parse_limits(";")
