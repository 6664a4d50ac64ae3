# The two README commands: `make run` (product on the embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint format worker worker-gpu migrate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

run: install          ## set up and serve the product (embedded default unless DATABASE_URL/REDIS_URL)
	BIN=$(BIN) scripts/run.sh

test: install         ## lint + the whole test suite (PostgreSQL, Redis, Celery, WebSockets, Chromium)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	BIN=$(BIN) scripts/test.sh $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

worker: install       ## default-queue worker (needs REDIS_URL)
	$(BIN)/celery -A config worker -Q default -c 2 -l info

worker-gpu: install   ## inference worker: one process, model loaded once (needs REDIS_URL)
	$(BIN)/celery -A config worker -Q $${CELERY_GPU_QUEUE:-gpu} -P solo -l info

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
