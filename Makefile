# The two README commands: `make run` (product on the embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HUMAN_VERSION := 3.3.6
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint format worker worker-gpu vendor clean

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

# prefork with one child, not solo/threads: task time limits are enforced by killing the
# pool's child process, which those pools lack. The child loads the model once, on its first
# task (so CUDA starts after the fork); a child killed at the limit is replaced.
worker-gpu: install   ## inference worker: one child process, model loaded once (needs REDIS_URL)
	$(BIN)/celery -A config worker -Q $${CELERY_GPU_QUEUE:-gpu} -P prefork -c 1 -l info

vendor:               ## refresh the vendored Chart.js and Human (face model) from the npm registry
	cd /tmp && rm -rf chartjs-vendor && mkdir chartjs-vendor && cd chartjs-vendor && npm pack chart.js@4 >/dev/null && tar xzf chart.js-*.tgz
	cp /tmp/chartjs-vendor/package/dist/chart.umd.min.js static/vendor/chart.js/
	cp /tmp/chartjs-vendor/package/LICENSE.md static/vendor/chart.js/
	node -e "console.log(require('/tmp/chartjs-vendor/package/package.json').version)" > static/vendor/chart.js/VERSION
	# the learner's browser finds the face: Human's ESM bundle (tfjs inside) and only the three
	# face models the recorder uses (blazeface box, facemesh landmarks, iris for gaze)
	cd /tmp && rm -rf human-vendor && mkdir human-vendor && cd human-vendor && npm pack @vladmandic/human@$(HUMAN_VERSION) >/dev/null && tar xzf vladmandic-human-*.tgz
	rm -rf static/vendor/human && mkdir -p static/vendor/human/models
	cp /tmp/human-vendor/package/dist/human.esm.js /tmp/human-vendor/package/LICENSE static/vendor/human/
	# long.js (inside tfjs) compiles a tiny WebAssembly module at import time for a faster
	# 64-bit multiply, in a try whose catch uses plain JS: the page's CSP (no 'wasm-unsafe-eval',
	# which we do not need: no wasm backend) reports it as a violation. Skip the attempt.
	sed -i 's/\([A-Za-z0-9_$$]*\) = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(\[0, 97, 115, 109, 1, 0, 0, 0, 1, 13,/\1 = null \&\& new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 13,/' static/vendor/human/human.esm.js
	grep -q "= null && new WebAssembly.Instance" static/vendor/human/human.esm.js
	for m in blazeface facemesh iris; do cp /tmp/human-vendor/package/models/$$m.json /tmp/human-vendor/package/models/$$m.bin static/vendor/human/models/; done
	node -e "console.log(require('/tmp/human-vendor/package/package.json').version)" > static/vendor/human/VERSION

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
