# Freshet — local development. `make demo` runs it, `make test` tests it; both set
# themselves up (virtualenv, pip, npm) on a fresh machine; the Firestore emulator needs Java.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE   := infra/node_modules/.installed
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)/infra
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup test lint demo demo-cloud emulators bench site deploy-config clean

setup: $(STAMP) $(NODE)

$(STAMP): requirements.txt requirements-nodeps.txt functions/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# firebase-tools, pinned: runs Google's Firestore emulator locally (Java 11+) and deploys
# Firestore indexes and rules.
$(NODE): infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Four workers on two cores: much of the suite waits (on emulators, on deadlines and
# leases that must pass), and each worker starts its own emulators. Whole files go to
# one worker (module fixtures start once) and the longest files go first (conftest.py).
TEST_WORKERS ?= 4

test: setup
	$(BIN)/ruff check .
	cd functions && ../$(BIN)/lint-imports ../pyproject.toml
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check .
	cd functions && ../$(BIN)/lint-imports ../pyproject.toml

demo: setup
	$(BIN)/freshet demo

# The demo, cloud-shaped: deploy's environment, a read-only source, a front like Cloud
# Run's, ID tokens on every call, the page in a bucket (freshet_local.cloud_local).
demo-cloud: setup
	$(BIN)/python -m freshet_local.cloud_local

emulators: setup
	$(BIN)/python -m freshet_local.emulators

bench: setup
	$(BIN)/python bench/run_all.py

site: setup
	$(BIN)/freshet site build

# Regenerate infra/deploy.mk (make deploy, make undeploy) and infra/firebase.firestore.json
# after editing infra/pipeline.yaml.
deploy-config: setup
	$(BIN)/python -m freshet_local.deploy

clean:
	rm -rf $(VENV) infra/node_modules .freshet/emulators site/public test-artifacts .pytest_cache

-include infra/deploy.mk
