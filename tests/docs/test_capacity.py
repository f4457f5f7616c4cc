"""The capacity model reads its inputs from benchmark results files (bench/capacity.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench import capacity
from bench.capacity import Deployment, MissingInput, Workload


def _m(label: str, value: float, unit: str) -> dict[str, Any]:
    return {"label": label, "value": value, "unit": unit, "baseline": None, "ratio": None,
            "extra": {}}


RESULTS: dict[str, dict[str, Any]] = {
    "http": {"info": {"redis_round_trips_per_request": {"main": 0, "ratelimit": 2,
                                                        "sessions": 1},
                      "db_reads_per_request": 1},
             "measurements": [_m("bare endpoint", 9000, "requests/s"),
                              _m("full-stack /v1/me", 1000, "requests/s")]},
    "ratelimit": {"info": {}, "measurements": [
        _m("EVALSHA ceiling x64", 70000, "decisions/s"),
        _m("sliding_window x64", 30000, "decisions/s"),
        _m("sliding_window x256", 35000, "decisions/s"),
        _m("gcra x256", 34000, "decisions/s"),
        _m("sliding_window key, 100/minute after 50 hits", 150, "bytes")]},
    "sessions": {"info": {}, "measurements": [_m("get x64", 40000, "ops/s"),
                                              _m("bytes per session", 400, "bytes/session")]},
    "audit": {"info": {}, "measurements": [
        _m("producer log() x256", 100000, "events/s"),
        _m("consumer -> PostgreSQL", 20000, "events/s"),
        _m("stream bytes per event", 300, "bytes/event")]},
    "db": {"info": {"concurrency": 32}, "measurements": [
        _m("plain asyncpg engine x32", 2000, "reads/s"), _m("db.read() x32", 1600, "reads/s")]},
    "breaker": {"info": {}, "measurements": [
        _m("overhead: async with breaker", 2.5, "us overhead/call")]},
    "health": {"info": {}, "measurements": [
        _m("ready, healthy deps throughput", 10000, "req/s")]},
}


def _write(directory: Path, overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in {**RESULTS, **(overrides or {})}.items():
        (directory / f"{name}.json").write_text(json.dumps(
            {"name": name, "title": name, "time": "2026-01-01T00:00:00Z", **data}))
    return directory


def _run(results: Path, out: Path, **work: Any) -> dict[str, Any]:
    return capacity.run(results, Workload(**work), Deployment(), out=out, make_chart=False)


def test_seed_targets_from_the_results(tmp_path: Path) -> None:
    result = _run(_write(tmp_path / "r"), tmp_path / "out")
    app = result["app"]
    assert app["requests_per_s"] == pytest.approx(100_000)
    # 100K / (1000 req/s x 0.7) = 143 processes -> 36 pods of 4.
    assert (app["processes"], app["pods"]) == (143, 36)
    assert result["inputs"]["full-stack requests/s per process"]["label"] == "full-stack /v1/me"
    # The configured algorithm's best concurrency is used (sliding_window x256, not gcra).
    assert result["redis"]["ratelimit"]["ops_per_shard_capacity"] == 35_000
    assert result["postgres"]["replicas"] == 81  # 90K reads / (1600 x 0.7)
    assert result["audit"]["consumers"] == 1
    assert result["saturates_first"]["component"] in {c["component"]
                                                      for c in result["ceilings"]}
    saved = json.loads((tmp_path / "out" / "capacity.json").read_text())
    assert saved["app"]["pods"] == 36 and "saturates first" in saved["table"]


def test_changing_a_benchmark_result_changes_the_output(tmp_path: Path) -> None:
    base = _run(_write(tmp_path / "a"), tmp_path / "oa")
    faster = {**RESULTS["http"], "measurements": [_m("full-stack /v1/me", 2000, "requests/s")]}
    fast = _run(_write(tmp_path / "b", {"http": faster}), tmp_path / "ob")
    assert fast["app"]["processes"] == 72 and fast["app"]["pods"] == 18
    assert base["app"]["pods"] == 36
    bigger = {**RESULTS["sessions"], "measurements": [
        _m("get x64", 40000, "ops/s"), _m("bytes per session", 40_000, "bytes/session")]}
    heavy = _run(_write(tmp_path / "c", {"sessions": bigger}), tmp_path / "oc")
    assert heavy["redis"]["sessions"]["memory_bytes"] == pytest.approx(
        100 * base["redis"]["sessions"]["memory_bytes"])
    assert heavy["redis"]["sessions"]["shards"] > base["redis"]["sessions"]["shards"]
    assert heavy["redis"]["sessions"]["sized_by"] == "memory"
    # With a per-decision (unmerged, Cluster) rate in the results, shards are sized by it.
    cluster = {**RESULTS["ratelimit"], "measurements": [
        *RESULTS["ratelimit"]["measurements"], _m("sliding_window unmerged x64", 7000,
                                                  "decisions/s")]}
    sharded = _run(_write(tmp_path / "d", {"ratelimit": cluster}), tmp_path / "od")
    assert sharded["redis"]["ratelimit"]["ops_per_shard_capacity"] == 7000


def test_the_bottleneck_moves_with_the_measurements(tmp_path: Path) -> None:
    slow_redis = {**RESULTS["sessions"], "measurements": [
        _m("get x64", 500, "ops/s"), _m("bytes per session", 400, "bytes/session")]}
    result = _run(_write(tmp_path / "r", {"sessions": slow_redis}), tmp_path / "o")
    assert result["saturates_first"]["component"] == "redis sessions"
    assert "sessions role" in result["saturates_first"]["why"]


def test_workload_parameters_scale_the_model(tmp_path: Path) -> None:
    results = _write(tmp_path / "r")
    small = _run(results, tmp_path / "o1", users=100_000)
    assert small["app"]["requests_per_s"] == pytest.approx(10_000)
    assert small["app"]["processes"] == 15


def test_db_reads_per_request_come_from_http_json(tmp_path: Path) -> None:
    cached = {**RESULTS["http"], "info": {**RESULTS["http"]["info"], "db_reads_per_request": 0.1}}
    result = _run(_write(tmp_path / "r", {"http": cached}), tmp_path / "o")
    assert result["postgres"]["reads_per_s"] == pytest.approx(9_000)
    assert result["postgres"]["replicas"] == 9


def test_unmeasured_optional_input_is_flagged_not_invented(tmp_path: Path) -> None:
    no_bytes = {**RESULTS["audit"], "measurements": RESULTS["audit"]["measurements"][:2]}
    result = _run(_write(tmp_path / "r", {"audit": no_bytes}), tmp_path / "o")
    assert list(result["unmeasured"]) == ["stream bytes per audit event"]
    assert result["redis"]["main"]["memory_bytes"] == 0
    assert "unmeasured (counted as 0): stream bytes per audit event" in result["table"]


def test_missing_file_names_it(tmp_path: Path) -> None:
    results = _write(tmp_path / "r")
    (results / "sessions.json").unlink()
    with pytest.raises(MissingInput, match=r"sessions\.json is missing: run `python "
                                           r"bench/sessions\.py`"):
        _run(results, tmp_path / "o")


def test_missing_measurement_names_it(tmp_path: Path) -> None:
    no_full_stack = {**RESULTS["http"], "measurements": [_m("bare", 9000, "requests/s")]}
    results = _write(tmp_path / "r", {"http": no_full_stack})
    with pytest.raises(MissingInput, match=r"http\.json has no measurement .*full-stack "
                                           r"requests/s per process.*'bare'"):
        _run(results, tmp_path / "o")
    no_trips = {**RESULTS["http"], "info": {}}
    _write(results, {"http": no_trips})
    with pytest.raises(MissingInput, match="redis_round_trips_per_request"):
        _run(results, tmp_path / "o")


def test_cli_prints_the_table_and_writes_the_chart(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    results = _write(tmp_path / "r")
    assert capacity.main(["--results", str(results), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "36 pods x 4 processes" in out and "saturates first:" in out
    assert (tmp_path / "o" / "capacity.png").stat().st_size > 1000
    (results / "db.json").unlink()
    assert capacity.main(["--results", str(results), "--no-chart"]) == 2
    assert "db.json is missing" in capsys.readouterr().err


def test_ratelimit_load_counts_one_script_per_policy(tmp_path: Path) -> None:
    one_pipeline = {**RESULTS["http"], "info": {**RESULTS["http"]["info"],
                                                "redis_round_trips_per_request": {
                                                    "ratelimit": 1, "sessions": 1}}}
    result = _run(_write(tmp_path / "r", {"http": one_pipeline}), tmp_path / "o")
    # One round trip carries the ip and user scripts: the shard still runs two.
    assert result["redis"]["ratelimit"]["ops_per_s"] == pytest.approx(
        2 * 100_000 + result["app"]["logins_per_s"])
    assert result["redis"]["main"]["ops_per_s"] == pytest.approx(result["audit"]["events_per_s"])


def test_update_doc_replaces_only_the_marked_block(tmp_path: Path) -> None:
    results = _write(tmp_path / "r")
    doc = tmp_path / "capacity.md"
    doc.write_text("intro\n<!-- capacity:begin -->\nold\n<!-- capacity:end -->\noutro\n")
    assert capacity.main(["--results", str(results), "--out", str(tmp_path / "o"),
                          "--no-chart", "--update-doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n<!-- capacity:begin -->\nRun on ")
    assert "old" not in text and text.endswith("<!-- capacity:end -->\noutro\n")
    assert "36 pods x 4 processes" in text and "http.json 2026-01-01T00:00:00Z" in text
