# Two entry points (see README): `make sample` runs the whole graph on the sample corpus,
# `make test` runs the test suite. Both set up .venv first (idempotent).
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
CACHE_CHAIN := raw_edf_recordings,npz_windows,dataset_index,manifest,balanced_dataset

.PHONY: setup sample test ui clean-cache

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

setup: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

sample: setup
	for split in train val eval; do \
		$(BIN)/dagster asset materialize -m eeg_assets --select '$(CACHE_CHAIN)' --partition $$split || exit 1; \
	done
	$(BIN)/dagster asset materialize -m eeg_assets --select trained_model

test: setup
	$(BIN)/python -m pytest

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

clean-cache:
	rm -rf cache/tusz results
