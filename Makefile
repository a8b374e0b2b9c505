# towerflow: `make demo` runs a real experiment end to end, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test test-slow test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# MovieLens 100K ships inside this wheel; its own dependencies (torch, ...) are not needed.
	$(BIN)/pip install --quiet --no-deps recbole==1.2.1
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium renders the HTML report in the browser test (Debian packages).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "headless Chromium is missing: sudo apt-get install chromium chromium-driver (the browser test needs it)"; fi

demo: $(STAMP)
	$(BIN)/towerflow run examples/movielens.yaml

test: $(STAMP) browser
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP) browser
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP) browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
