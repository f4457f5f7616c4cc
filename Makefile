# fleetkit — quick start: `make run` (embedded mode) and `make test` (real services, whole suite).
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: install run test lint typecheck services-start services-stop bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.installed: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

install: .venv/.installed

run: install
	.venv/bin/fleetkit serve

test: install
	bash scripts/test.sh

lint: install
	.venv/bin/ruff check src tests bench
	.venv/bin/mypy

typecheck: lint

services-start:
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

bench: install
	bash scripts/bench.sh

clean:
	rm -rf .venv .uv .pytest_cache .mypy_cache .ruff_cache
