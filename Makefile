# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Airflow lives in an environment of its own, as users run it: never a core dependency.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test lint typecheck unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The browser tests drive Debian's chromium (Playwright downloads no browser here).
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: could not install chromium; the browser test will be skipped"
	@# Alerting tests run Debian's Prometheus and Alertmanager on loopback (their services
	@# are never started: the tests start their own processes).
	@test -x /usr/bin/prometheus -a -x /usr/bin/prometheus-alertmanager || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null; } \
	  || echo "warning: could not install prometheus; the alerting tests will be skipped"
	touch $(STAMP)

$(AIRFLOW_STAMP):
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet 'apache-airflow>=3,<4'
	touch $(AIRFLOW_STAMP)

demo: $(STAMP)
	$(BIN)/shopstream demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers, a test file each at a time: most tests wait on subprocesses and servers, so
# two run in about half the time on two cores (module fixtures stay one per file).
unit: $(STAMP) $(AIRFLOW_STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/fraud.py
	$(BIN)/python bench/kafka.py
	$(BIN)/python bench/queries.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/backup.py
	@test -f /usr/share/java/postgresql.jar || $(SUDO) apt-get install -y -qq libpostgresql-jdbc-java >/dev/null
	$(BIN)/python bench/spark.py
	$(BIN)/python bench/scaling.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .shopstream .pytest_cache .mypy_cache .ruff_cache
