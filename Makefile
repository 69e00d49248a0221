# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core for the browser tests' accessibility check, fetched by npm into a cache folder
# ignored by git; without npm (or offline) the check skips and says why.
AXE_VERSION := 4.14.1
AXE_DIR := .cache/axe-core/$(AXE_VERSION)
AXE := $(AXE_DIR)/axe.min.js

.PHONY: install run test lint bench clean axe

install: $(STAMP)

# The pinned requirements, then this project itself, editable and without dependencies
# of its own (pyproject.toml), built with the pinned setuptools already in the venv.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
	    --no-build-isolation -e .
	touch $(STAMP)

axe: $(AXE)

$(AXE):
	@mkdir -p $(AXE_DIR)
	@if command -v npm >/dev/null 2>&1 && (cd $(AXE_DIR) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && \
	    tar -xzf axe-core-$(AXE_VERSION).tgz --strip-components=1 package/axe.min.js package/LICENSE); then \
	    rm -f $(AXE_DIR)/axe-core-$(AXE_VERSION).tgz; \
	else echo "WARNING: could not fetch axe-core $(AXE_VERSION) with npm; the accessibility checks will skip" >&2; fi

run: install
	$(BIN)/python server.py

test: install axe
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/engine_bench.py --repeat 3

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache
