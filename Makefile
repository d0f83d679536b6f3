# Set-up and the two commands of the README. Everything installs into .venv; torch is pinned to the local CPU wheel
# first, so that no other requirement can pull a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup run test test-fast test-slow lint typecheck layers docs check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded default universe: prepare easyvqa's features (cached after the first run), print its
# statistics, then run the whole benchmark (every stage, row and seed; resumable) into runs/bench-easyvqa-random.
run: setup
	$(BIN)/hyperguide prepare easyvqa
	$(BIN)/hyperguide stats easyvqa
	$(BIN)/hyperguide bench easyvqa --out runs/bench-easyvqa-random

# The default test suite (slow tests excluded; about 6 minutes on 2 cores of an AMD EPYC, 2026-12-06).
test: setup
	$(BIN)/pytest -q

# The unit tests of every module: the default suite less the tests that train or bench a run (marked integration);
# about 1 minute on 2 idle cores of an AMD EPYC, 2026-12-06.
test-fast: setup
	$(BIN)/pytest -q -m "not slow and not integration"

# Slow tests only (full-size runs).
test-slow: setup
	$(BIN)/pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests bench examples docs
	$(BIN)/ruff format --check src tests bench examples docs README.md CONTRIBUTING.md

typecheck: setup
	$(BIN)/mypy

# The architecture's contracts (pyproject.toml, [tool.importlinter]): the layering, networks import no procedure.
layers: setup
	$(BIN)/lint-imports

# The documentation site (mkdocs.yml) into build/site, strictly: a broken link or anchor, a page missing from the nav
# or a reference page that cannot be generated fails it (not --quiet: it hides the warnings that --strict counts).
# `$(BIN)/mkdocs serve` serves it while you write.
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict

# The quality gate, and the README's test command: lint, format, types, layering, the site, then the default tests
# (the code blocks of the README and the site among them: tests/test_docs.py).
check: lint typecheck layers docs test

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
