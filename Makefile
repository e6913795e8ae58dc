# The local platform and its checks. `make start` and `make test` are all a new machine
# with Python 3.11 needs; everything else is installed by these files.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell (cat requirements.txt requirements-dev.txt constraints.txt; echo bytecode) | sha1sum | cut -c1-12)
# ecommerce_ml's heavy (embedding/NLP) environment: its own virtualenv, rebuilt only when
# requirements-embed.txt changes. Plain pip on purpose (see that file).
EMBED_VENV  := .venv-embed
EMBED_STAMP := $(EMBED_VENV)/.installed-$(shell cat requirements-embed.txt | sha1sum | cut -c1-12)
export PYTHONPATH := $(CURDIR)
export XDG_RUNTIME_DIR ?= /tmp/platform-runtime-$(shell id -u)
PYTEST_ARGS ?=
MODE ?= deploy

.PHONY: browser dockerfile flower flower-stop help install start test-faults test-faults-unprotected test-noisy bench-noisy aurora-data ecommerce-data stop restart status logs parse image-deps pytest test lint bench bench-executors settings-env airflow-env clean lineage-load

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@echo "[platform] creating $(VENV) and installing the pinned requirements"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	@$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-dev.txt -c constraints.txt
	@# bytecode once, as pip does by default (uv does not): every platform process imports
	@# Airflow, and the team users' workers cannot write it into the virtualenv themselves
	@$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

$(EMBED_STAMP): requirements-embed.txt
	@echo "[platform] creating $(EMBED_VENV) (ecommerce_ml's embedding models) with plain pip"
	@rm -rf $(EMBED_VENV) && $(PYTHON) -m venv $(EMBED_VENV)
	@$(EMBED_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-embed.txt
	@touch $@

install: $(STAMP) $(EMBED_STAMP)  ## create the virtualenvs (Airflow's, and ecommerce_ml's heavy one) from the project's files

start: install  ## start the whole platform (embedded PostgreSQL, stand-ins, mail sink, Airflow, per-team Redis/Celery; Flower on demand: make flower)
	@mkdir -p -m 700 $(XDG_RUNTIME_DIR)
	@$(BIN)/python -m devplatform start

stop:  ## stop exactly what `make start` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m devplatform stop; fi

restart: stop start  ## stop, then start

flower:  ## start a team's Flower (Celery monitoring, login team:password) on the running platform: make flower TEAM=referral
	@test -n "$(TEAM)" || { echo "usage: make flower TEAM=<team>"; exit 2; }
	@$(BIN)/python -m devplatform flower $(TEAM)

flower-stop:  ## stop a team's Flower: make flower-stop TEAM=referral
	@test -n "$(TEAM)" || { echo "usage: make flower-stop TEAM=<team>"; exit 2; }
	@$(BIN)/python -m devplatform flower --stop $(TEAM)

status:  ## what is running
	@$(BIN)/python -m devplatform status

logs:  ## follow every component's log
	@tail -n 50 -F .local/logs/*.log

parse:  ## parse every bundle in its own process, like the dag-processor
	@$(BIN)/python -m devplatform parse

dockerfile: install  ## rewrite the Dockerfile's team lines (executors, logins, bundles) from domains/ (after adding a domain)
	@$(BIN)/python -m devplatform dockerfile

image-deps: install  ## the image's dependencies alone (Airflow 3.3.2 + requirements.txt, constraints.txt) import, parse and list every bundle
	@$(BIN)/python -m devplatform.image_deps --python $(PYTHON)

lint: install  ## ruff, including the Airflow (AIR) rules
	@$(BIN)/ruff check .

pytest: install  ## the test suite only (PYTEST_ARGS=... to narrow)
	@$(BIN)/pytest $(PYTEST_ARGS)

browser:  ## Debian's chromium for the browser tests (apt-get as root when missing; Playwright never downloads a browser)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "[platform] chromium is missing: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi; }

test: install browser lint image-deps  ## lint, the image's dependency set, then every test on a real embedded PostgreSQL
	@$(BIN)/pytest $(PYTEST_ARGS)

test-faults: install  ## the platform fault matrix (issue 26): a platform of its own, each fault injected while runs of every team are in flight (~30 min)
	@PLATFORM_FAULT_MATRIX=1 $(BIN)/pytest tests/test_platform_faults.py $(PYTEST_ARGS)

test-faults-unprotected: install  ## the fault matrix's restart rows with supervisord's restarts off: each must fail (~30 min)
	@PLATFORM_AUTORESTART=0 PLATFORM_FAULT_MATRIX=1 $(BIN)/pytest tests/test_platform_faults.py -k "component or broker or postgresql" $(PYTEST_ARGS)

bench: install  ## benchmarks (not tests): bulk upsert vs COPY vs to_sql, parse times, referral, hss, aurora features+predictions (100k users), aurora training (2,000 users x 90 days), parsing as the team, the lineage explorer (1/8/32 HTTP clients, depth-5 from 10k to 1M events, retention at 1M)
	@$(BIN)/python -m benchmarks.bulk_upsert
	@$(BIN)/python -m benchmarks.parse_times
	@$(BIN)/python -m benchmarks.referral_sync
	@$(BIN)/python -m benchmarks.hss_fanout
	@$(BIN)/python -m benchmarks.aurora_features
	@$(BIN)/python -m benchmarks.aurora_training
	@$(BIN)/python -m benchmarks.team_parsing
	@$(BIN)/python -m benchmarks.lineage

bench-noisy: install  ## benchmark: noisy neighbours, one team's flood vs another's delays, per-team limits and CPU groups off then on (two platforms, ~40 min; under flock /tmp/bench.lock)
	@flock /tmp/bench.lock $(BIN)/python -m benchmarks.noisy_neighbours --limits off --cpu-groups off
	@flock /tmp/bench.lock $(BIN)/python -m benchmarks.noisy_neighbours --limits on

test-noisy: install  ## per-team limits in force on a platform of its own (flood, slow DAG file; ~10 min)
	@PLATFORM_NOISY=1 $(BIN)/pytest tests/test_noisy_neighbours.py $(PYTEST_ARGS)

bench-executors: install  ## benchmark: LocalExecutor vs per-team Celery with the workers' previous and tuned settings (3 interleaved rounds of whole platforms, ~30 min): timings, per-task timeline, idle PSS per process kind
	@$(BIN)/python -m benchmarks.executors

lineage-load: install  ## load an OpenLineage events file into the running platform's lineage explorer (FILE=.local/openlineage/events.jsonl)
	@$(BIN)/python -m devplatform lineage load $(or $(FILE),.local/openlineage/events.jsonl)

aurora-data: install  ## aurora's generated dataset into the running local platform (AURORA_DATA_ARGS="--users 5000 --defects all")
	@$(BIN)/python -m devplatform generate-data aurora $(AURORA_DATA_ARGS)

ECOMMERCE_SCALE ?= 1
ECOMMERCE_DAYS ?= 2
ecommerce-data: install  ## ecommerce_ml raw drops (H&M format, reviews, events) in the local lake (ECOMMERCE_SCALE=, ECOMMERCE_DAYS=, ECOMMERCE_DAY=)
	@$(BIN)/python -m domains.ecommerce_ml.local.generator --lake "file://$(CURDIR)/.local/tenants/ecommerce_ml/lake" \
		--days $(ECOMMERCE_DAYS) --scale $(ECOMMERCE_SCALE) $(if $(ECOMMERCE_DAY),--day $(ECOMMERCE_DAY))

settings-env:  ## team-scoped AIRFLOW_CONN__/AIRFLOW_VAR__ lines for a Deployment, every value from the environment (MODE=local: the local platform's)
	@$(BIN)/python -m devplatform settings-env --$(MODE)

airflow-env:  ## `eval $$(make -s airflow-env)` to use the airflow CLI against the local platform
	@$(BIN)/python -m devplatform airflow-env

clean: stop  ## stop and delete all local state (database, logs, mail)
	rm -rf .local
