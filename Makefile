# TrustShip — the two set-up commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup system-packages demo test test-unit test-integration compose-smoke lint typecheck check-artifacts bench clean

# Python environment + npm packages (solc, OpenZeppelin, anvil). Re-runs only when the
# dependency files change.
setup: $(VENV)/.installed contracts/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

contracts/node_modules/.installed: contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund
	touch $@

demo: setup
	$(BIN)/trustship demo

# mosquitto and the stock clients (mosquitto_sub/pub) the integration tests run
# against, from Debian's packages (installed when missing and run as root).
system-packages:
	scripts/system_packages.sh

# The whole suite: unit tests and the integration tests on real servers
# (anvil, mosquitto, PostgreSQL), which start on free ports. Two passes: the suite on
# TEST_WORKERS processes (pytest-xdist, each test file whole in one worker), then the
# tests marked `serial` in one process (schemathesis' one test per API operation
# collapses to a single test under xdist). Either pass fails the target, exit 5 (no
# tests) included. TEST_WORKERS=0 runs the first pass in one process.
TEST_WORKERS ?= 2
PARALLEL := -n $(TEST_WORKERS) --dist loadfile

test: setup system-packages
	$(BIN)/pytest $(PARALLEL) -m "not serial"
	$(BIN)/pytest -m serial

test-unit: setup
	$(BIN)/pytest $(PARALLEL) -m "not integration and not serial"
	$(BIN)/pytest -m "serial and not integration"

test-integration: setup system-packages
	$(BIN)/pytest $(PARALLEL) -m "integration and not serial"
	$(BIN)/pytest -m "integration and serial"

# docker-compose.yml for real: a Docker engine (installed and started if none answers,
# as root), local stand-ins for the upstream images, the catalogue through the stack.
compose-smoke:
	scripts/compose_smoke.sh

# ruff, then the import contracts of pyproject.toml [tool.importlinter]
# (docs/architecture.md, "Import contracts").
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy backend iot_simulator trustship testkit

check-artifacts: setup
	$(BIN)/trustship compile --check

bench: setup
	$(BIN)/python bench/gas.py

clean:
	rm -rf $(VENV) contracts/node_modules var reports
