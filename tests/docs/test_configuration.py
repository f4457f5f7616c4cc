"""docs/configuration.md is generated from Settings and must not drift from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from fleetkit.config import Settings
from tests.docs.runner import ROOT


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_docs",
                                                  ROOT / "scripts" / "gen_config_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_page_matches_the_model(gen: ModuleType) -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == gen.render(), (
        "docs/configuration.md drifted from fleetkit.config.Settings: "
        "run .venv/bin/python scripts/gen_config_docs.py")


def test_every_setting_is_documented_once(gen: ModuleType) -> None:
    fields = Settings.model_fields
    undocumented = [n for n, f in fields.items() if not f.description and n not in gen.NOTES]
    assert undocumented == [], f"settings without a description or note: {undocumented}"
    assert sorted(set(gen.NOTES) - set(fields)) == [], "notes for settings that do not exist"
    page = gen.render()
    for name in fields:
        assert page.count(f"| `{name.upper()}` |") == 1, name


def test_check_mode_detects_a_stale_page(gen: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    assert gen.main(["--check", "--output", str(out)]) == 1  # missing
    assert gen.main(["--output", str(out)]) == 0
    assert gen.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text().replace("`WEB_CONCURRENCY`", "`WEB_WORKERS`"))
    assert gen.main(["--check", "--output", str(out)]) == 1


def test_rows_show_type_default_and_constraints(gen: ModuleType) -> None:
    assert gen.row("port") == "| `PORT` | int | `8000` | Listen port of `fleetkit serve`. " \
                              "(>= 1, <= 65535) |"
    assert "`sliding_window` \\| `sliding_log` \\| `gcra`" in gen.row("rate_limit_algorithm")
    assert "| (empty) |" in gen.row("database_read_urls")
