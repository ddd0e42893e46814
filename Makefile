# Two entry points (see README): `make sample` runs the whole graph on the sample corpus,
# `make test` runs the test suite. Both set up .venv first (idempotent).
VENV ?= .venv
BIN := $(VENV)/bin
DEFAULT_DAGSTER_HOME := $(CURDIR)/.dagster_home
export DAGSTER_HOME ?= $(DEFAULT_DAGSTER_HOME)
CACHE_CHAIN := raw_edf_recordings,npz_windows,dataset_index,manifest,balanced_dataset
# The experiment `make sample` trains (experiments/<name>.toml).
EXPERIMENT ?= sample
# The dagster commands that read neither pyproject.toml nor workspace.yaml (only -m/-f): the
# activated shell names the module for them (click's DAGSTER_CLI_<COMMAND>_<OPTION> variables).
TYPED_COMMANDS := ASSET_MATERIALIZE ASSET_LIST JOB_EXECUTE
TYPED_VARIABLES := $(foreach command,$(TYPED_COMMANDS),DAGSTER_CLI_$(command)_MODULE_NAME)

.PHONY: setup sample sample-corpus test ui clean-cache lock

# Quiet unless something fails: pip's own output goes to $(VENV)/setup.log, shown on failure.
SETUP_LOG := $(VENV)/setup.log
QUIETLY = >>$(SETUP_LOG) 2>&1 || { tail -40 $(SETUP_LOG); echo "[setup] failed: see $(SETUP_LOG)"; exit 1; }

$(BIN)/.installed: pyproject.toml requirements.lock
	@echo "[setup] creating $(VENV)"
	@python3 -m venv $(VENV)
	@: > $(SETUP_LOG)
	@echo "[setup] upgrading pip"
	@$(BIN)/pip install -q --upgrade pip $(QUIETLY)
	@echo "[setup] installing the locked dependencies (requirements.lock: torch, dagster, dg; 1-3 min)"
	@$(BIN)/pip install -q -r requirements.lock $(QUIETLY)
	@echo "[setup] installing eeg_assets (editable)"
	@$(BIN)/pip install -q --no-deps -e '.[dev]' $(QUIETLY)
	@touch $@

# Re-pin every dependency after a change to pyproject.toml (then commit requirements.lock).
lock: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	@{ sed -n '1,3p' requirements.lock; $(BIN)/pip freeze --exclude-editable \
		| sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock
	@echo "[lock] requirements.lock: $$(grep -vc '^#' requirements.lock) pinned packages"

# Sourced at the end of bin/activate, so that the commands a person types find the project and
# its instance; `deactivate` takes them away again. A DAGSTER_HOME already set wins, as above.
define ACTIVATE_ENV
# Written by `make setup`; sourced by bin/activate.
export $(foreach variable,$(TYPED_VARIABLES),$(variable)=eeg_assets)
if [ -z "$${DAGSTER_HOME:-}" ]; then
    export DAGSTER_HOME='$(DEFAULT_DAGSTER_HOME)'
    _EEG_ASSETS_SET_DAGSTER_HOME=1
fi
eval "_eeg_assets_venv_$$(declare -f deactivate)"
deactivate () {
    unset $(TYPED_VARIABLES)
    if [ -n "$${_EEG_ASSETS_SET_DAGSTER_HOME:-}" ]; then
        unset DAGSTER_HOME _EEG_ASSETS_SET_DAGSTER_HOME
    fi
    _eeg_assets_venv_deactivate "$$@"
    [ "$${1:-}" = nondestructive ] || unset -f _eeg_assets_venv_deactivate
}
endef
export ACTIVATE_ENV
SOURCE_ACTIVATE_ENV := . "$$VIRTUAL_ENV/bin/eeg_assets_env.sh"

$(BIN)/eeg_assets_env.sh: $(BIN)/.installed Makefile | $(DAGSTER_HOME)/dagster.yaml
	@echo "[setup] $(BIN)/activate: DAGSTER_HOME and the module of the dagster commands"
	@printf '%s\n' "$$ACTIVATE_ENV" > $@
	@grep -qxF '$(SOURCE_ACTIVATE_ENV)' $(BIN)/activate \
		|| printf '%s\n' '$(SOURCE_ACTIVATE_ENV)' >> $(BIN)/activate
	@echo "[setup] done: \`source $(BIN)/activate\` for the dagster and dg commands (README)"

# python_log_level INFO: the typed `dagster` commands print results, not Dagster's DEBUG event
# lines (the UI's event log still holds every event).
$(DAGSTER_HOME)/dagster.yaml:
	@echo "[setup] DAGSTER_HOME $(DAGSTER_HOME) (telemetry off, console at INFO)"
	@mkdir -p $(DAGSTER_HOME)
	@printf 'telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n' > $@

setup: $(BIN)/eeg_assets_env.sh $(DAGSTER_HOME)/dagster.yaml

# INFO on the console: Dagster's DEBUG event lines buried the build and training lines (the UI's
# event log still holds every event).
QUIET_RUN := --config-json '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'

# The sample corpus is written here, by an explicit command, never by a Dagster step. With
# EEG_ASSETS_RAW_ROOT set, the raw root is the user's: nothing is written to it.
SAMPLE_CORPUS := data/sample_corpus
sample-corpus: setup
	@if [ -n "$${EEG_ASSETS_RAW_ROOT:-}" ]; then \
		echo "[sample] EEG_ASSETS_RAW_ROOT=$$EEG_ASSETS_RAW_ROOT: not writing the sample corpus"; \
	elif [ ! -d $(SAMPLE_CORPUS)/edf ]; then \
		echo "[sample] writing the sample corpus to $(SAMPLE_CORPUS)"; \
		rm -rf $(SAMPLE_CORPUS).partial && \
		$(BIN)/python -m eeg_assets make-sample-corpus --out $(SAMPLE_CORPUS).partial >/dev/null && \
		mv $(SAMPLE_CORPUS).partial $(SAMPLE_CORPUS); \
	fi

sample: sample-corpus
	for split in train val eval; do \
		echo "[sample] the cache chain of $$split"; \
		$(BIN)/dagster asset materialize -m eeg_assets --select '$(CACHE_CHAIN)' --partition $$split $(QUIET_RUN) || exit 1; \
	done
	@echo "[sample] trained_model[$(EXPERIMENT)]"
	$(BIN)/dagster asset materialize -m eeg_assets --select trained_model --partition $(EXPERIMENT) $(QUIET_RUN)
	for split in val eval; do \
		echo "[sample] model_evaluation[$(EXPERIMENT)|$$split]"; \
		$(BIN)/dagster asset materialize -m eeg_assets --select model_evaluation --partition "$(EXPERIMENT)|$$split" $(QUIET_RUN) || exit 1; \
	done
	@echo "[sample] model_comparison"
	$(BIN)/dagster asset materialize -m eeg_assets --select model_comparison $(QUIET_RUN)

test: setup
	$(BIN)/python -m pytest

ui: sample-corpus
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

clean-cache:
	rm -rf cache/tusz results
