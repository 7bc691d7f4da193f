# Two entry points for people: `make run` (the main job on embedded defaults) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install tools run dev web render-sample test lint bench review fixtures clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Pinned command-line tools the tests use (kustomize), built from Go modules once per machine.
# Without Go the k8s tests skip locally; under CI=true a failed build fails the run.
tools:
	bash scripts/tools.sh kustomize >/dev/null || [ "$$CI" != true ]

# The demo page at /demo is built on first use when Node.js is there (scripts/web.sh).
run: install
	bash scripts/web.sh ensure
	$(VENV)/bin/atlas serve --host 127.0.0.1 --port 8000

# The realtime stack: livekit-server, `atlas serve` (with the /demo page), `atlas agent dev`;
# prints the URLs and a key.
dev: install
	VENV=$(VENV) bash scripts/dev.sh

web:
	bash scripts/web.sh build

render-sample: install
	$(VENV)/bin/atlas render --audio tests/fixtures/speech.wav --image tests/fixtures/face.jpg \
		-o out/sample.mp4 --contact-sheet out/sample.png

# PostgreSQL, Redis and livekit-server are installed (apt, Go) and started for the run.
test: install tools
	bash scripts/web.sh prepare
	bash scripts/services.sh run $(VENV)/bin/pytest -q --durations=25

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.run

# Contact sheets of the warp mouth on every test face (rest + 4 widest-open frames), for people.
review: install
	$(PY) -m bench.review out/review

fixtures: install
	$(PY) scripts/make_fixtures.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis out build dist *.egg-info \
		web/node_modules web/dist
