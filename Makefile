# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test unit integration lint format up sandbox worker bench bench-quick profile soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install          ## the POS end-of-day example end to end (embedded Redis unless ERPSYNC_REDIS_URL)
	$(BIN)/erpsync demo

test: install lint     ## the whole suite: unit and integration tests
	$(BIN)/pytest -q -ra

unit: install
	$(BIN)/pytest -q -ra tests/unit

integration: install
	$(BIN)/pytest -q -ra tests/integration

lint: install          ## ruff (style, complexity) and mypy (types; pyproject [tool.mypy])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install         ## scenarios A and B against naive and direct, then C (tenant isolation) and A with the archive on against off (about twelve minutes); bench/results/
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench

bench-quick: install   ## the same, smaller (A and B at 3 %), about three minutes
	$(BIN)/python -m bench --quick

profile: install       ## CPU per stage of the hot path (submit, intake, flush, send) in one process; STAGE=intake adds cProfile
	$(BIN)/python -m bench.profile $(if $(STAGE),--stage $(STAGE))

SOAK_MINUTES ?= 30
soak: install          ## mixed load, random faults and worker kills for SOAK_MINUTES (30), then the audit; bench/results/
	$(BIN)/python -m tests.soak --minutes $(SOAK_MINUTES)

.PHONY: screenshots
screenshots: install   ## the console's screenshots in docs/images/, taken by its browser test (needs /usr/bin/chromium)
	ERPSYNC_SCREENSHOTS=docs/images $(BIN)/pytest -q -ra tests/integration/test_console_browser.py

# honcho runs every process with this PATH: the venv's celery and erpsync, whether or not the venv is activated.
# flower and console refuse to start without their logins (FLOWER_BASIC_AUTH, ERPSYNC_CONSOLE_AUTH; honcho reads
# a .env file), and honcho stops every process when one ends: set them, or name the processes in PROCS.
PROCS ?=
up: install            ## the Procfile's processes under honcho (all, or PROCS="worker sender sandbox"); Ctrl-C stops them
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start $(PROCS)

sandbox: install       ## the sandbox ERP on 127.0.0.1:8765
	$(BIN)/erpsync sandbox

worker: install        ## a worker against ERPSYNC_REDIS_URL
	$(BIN)/celery -A worker worker --loglevel=INFO

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
