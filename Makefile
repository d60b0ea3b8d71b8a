# The two README commands: `make demo` (pipeline on sample data) and `make test` (the suite).
# Both set up everything they need first (venv, pinned packages, JVM jars; `make test` also
# Prometheus/Alertmanager from Debian packages) and are safe to re-run.
SHELL := /bin/bash
CONFIG ?= conf/local.yaml
IMPRESSIONS ?= 20000
SEED ?= 42

.PHONY: setup setup-s3 package demo test lint promtool-test notebooks notebooks-html

setup:
	@bash scripts/setup.sh

# Opt-in: the S3A jars of conf/cluster.yaml (hadoop-aws + AWS SDK v2 S3 modules, ~18 MB) into
# .venv/spark-conf-cluster/ (use with SPARK_CONF_DIR=.venv/spark-conf-cluster).
setup-s3: setup
	@bash scripts/setup_s3.sh

# dist/adlake-<version>.zip of lib/adlake, for spark-submit --py-files.
package:
	@bash scripts/package.sh

demo: setup
	@bash scripts/demo.sh "$(CONFIG)" "$(IMPRESSIONS)" "$(SEED)"
	@if [ -n "$(HTML)" ]; then bash scripts/notebooks.sh html "$(CONFIG)" "$(IMPRESSIONS)" "$(SEED)"; fi

# Analysts: the sample lakehouse (make demo, only when it has no gold tables yet), then Jupyter
# Lab on notebooks/. notebooks-html (or `make demo HTML=1`) renders them to <lakehouse>/_reports.
notebooks: setup
	@bash scripts/notebooks.sh lab "$(CONFIG)" "$(IMPRESSIONS)" "$(SEED)"

notebooks-html: setup
	@bash scripts/notebooks.sh html "$(CONFIG)" "$(IMPRESSIONS)" "$(SEED)"

test: setup setup-s3 promtool-test
	@.venv/bin/ruff check lib jobs scripts tests notebooks
	@.venv/bin/mypy lib jobs scripts
	@.venv/bin/python -m pytest -q

lint: setup
	@.venv/bin/ruff check lib jobs scripts tests notebooks && .venv/bin/mypy lib jobs scripts

# Alerting rules: installs promtool/Prometheus/Alertmanager if missing (Debian packages, root), then
# checks conf/prometheus/alerts.yml and runs its unit tests.
promtool-test:
	@bash scripts/setup_prometheus.sh
	@promtool check rules conf/prometheus/alerts.yml
	@promtool test rules conf/prometheus/tests/alerts_test.yml
