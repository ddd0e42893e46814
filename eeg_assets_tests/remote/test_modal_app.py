"""The Modal app module, imported offline: what it declares and what its functions do.

Every test imports ``eeg_assets/remote/modal_app.py`` afresh (its settings are read at import)
with the network cut off: any socket connection or name lookup fails the test. Modal itself is
never reached, so the image build, the GPU and the volume are checked as declarations only (the
spawned calls run end to end against the stand-in for Modal's servers in test_modal_chain.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import modal
import pytest

from dagster_pipes import encode_param

from eeg_assets.orchestration.backend import ModalBackend
from eeg_assets.settings import Settings
from eeg_assets_tests.support.modal_spies import (  # noqa: F401 - no_network is a fixture
    HOST_ONLY, REPO_ROOT, Recorder, load_app_module, no_network, project_dependencies,
    spy_from_name,
)

APP_FILE = REPO_ROOT / "eeg_assets" / "remote" / "modal_app.py"


def load_app(monkeypatch, **settings: str):
    return load_app_module(monkeypatch, APP_FILE, **settings)


def test_default_declarations(monkeypatch):
    recorder = Recorder(monkeypatch)
    app = load_app(monkeypatch)
    assert app.app.name == "eeg-assets-train"
    assert list(recorder.functions) == ["train", "evaluate", "ping"]
    for name in ("train", "evaluate"):
        function = getattr(app, name)
        assert isinstance(function, modal.Function) and function.app is app.app
        declared = recorder.functions[name]
        assert declared["gpu"] == "A100"
        assert declared["timeout"] == 6 * 3600
        assert declared["cpu"] >= 4 and declared["memory"] >= 16 * 1024
        assert set(declared["volumes"]) == {"/results"}
        info = function.info()  # what Modal would send: resolved from the declarations
        assert info.gpus == [("A100", 1)]
        assert info.timeout == 6 * 3600
        assert info.cpu == 8.0 and info.memory_mib == 32768
        assert {path: mount.name for path, mount in info.volumes.items()} == {
            "/results": "eeg-assets-results"}
        # Preemptible (cheaper): a restarted call resumes from the last committed checkpoint.
        assert info.nonpreemptible is False and info.max_retries in (None, 0)
    assert app.ping.info().gpus == []  # modal-check's round trip costs no GPU
    assert not hasattr(app, "run")  # deployed and spawned by name: no `modal run` entrypoint


def test_the_volume_and_queue_are_looked_up_as_deployed_objects(monkeypatch):
    looked_up = spy_from_name(monkeypatch, modal.Volume, modal.Queue)
    load_app(monkeypatch)
    assert ("Volume", "eeg-assets-results", {"create_if_missing": True, "version": 2}) \
        in looked_up
    assert ("Queue", "eeg-assets-pipes", {"create_if_missing": True}) in looked_up


def test_settings_come_from_the_environment(monkeypatch):
    app = load_app(monkeypatch, EEG_ASSETS_MODAL_GPU="H100", EEG_ASSETS_MODAL_VOLUME="other-vol",
                   EEG_ASSETS_MODAL_TIMEOUT_S="3600", EEG_ASSETS_MODAL_CPU="16",
                   EEG_ASSETS_MODAL_MEMORY_MB="65536")
    info = app.train.info()
    assert info.gpus == [("H100", 1)]
    assert info.timeout == 3600
    assert info.cpu == 16.0 and info.memory_mib == 65536
    assert info.volumes["/results"].name == "other-vol"
    assert app.SETTINGS.volume == "other-vol" and app.CODE_VERSION != load_app(monkeypatch).CODE_VERSION


def test_the_image_installs_the_package_and_what_the_container_imports(monkeypatch):
    recorder = Recorder(monkeypatch)
    load_app(monkeypatch)
    (slim,) = [kwargs for name, _args, kwargs in recorder.calls if name == "debian_slim"]
    assert slim["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert recorder.args_of("add_local_python_source") == [("eeg_assets",)]
    installed = [package for args in recorder.args_of("pip_install") for package in args]
    for requirement in project_dependencies():
        name = requirement.split("=")[0].split(">")[0].split("<")[0].strip()
        if name in HOST_ONLY:
            assert not any(p.split("=")[0] == name for p in installed), name
            continue
        matches = [p for p in installed if p.split("=")[0].split(">")[0] == name]
        assert matches, f"{name} is a dependency of eeg_assets but not installed in the image"
        assert matches == [f"{name}=={version(name).split('+')[0]}"], (requirement, matches)


def test_the_container_entry_point_needs_no_dagster():
    """The image installs dagster-pipes only: the entry point must not import dagster itself."""
    code = ("import sys, eeg_assets.remote.train_entry, eeg_assets.lib.model.train_run, "
            "eeg_assets.remote.evaluate_entry, eeg_assets.lib.model.evaluate_run, "
            "eeg_assets.remote.pipes_channel; "
            "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_paths_agree_with_the_backend(monkeypatch, tmp_path):
    app = load_app(monkeypatch)
    assert app.RESULTS_MOUNT == "/results"
    backend = ModalBackend(settings=Settings(raw_root=tmp_path, backend="modal"))
    assert backend.cache_path("val") == Path("/results/cache/tusz/val")
    assert backend.results_path("trained_model").parent == Path(app.RESULTS_MOUNT)


class Volume:
    def __init__(self, events: list):
        self.events = events

    def commit(self):
        self.events.append("commit")


def pipes_call(app, code_version: str | None = None, **flags: str) -> dict:
    context = {"asset_keys": ["trained_model"], "extras": {}, "run_id": "r", "job_name": None,
               "code_version_by_asset_key": None, "provenance_by_asset_key": None,
               "partition_key": None, "partition_key_range": None,
               "partition_time_window": None, "retry_number": 0}
    env = {"DAGSTER_PIPES_CONTEXT": encode_param({"data": context}),
           "DAGSTER_PIPES_MESSAGES": encode_param({})}
    return {"pipes_env": env, "partition": "p", "flags": flags,
            "code_version": app.CODE_VERSION if code_version is None else code_version}


@pytest.mark.parametrize("function, entry", [("train", "train_entry"),
                                             ("evaluate", "evaluate_entry")])
@pytest.mark.parametrize("fails", [False, True])
def test_each_function_serves_its_entry_point_and_always_commits_the_volume(monkeypatch, fails,
                                                                            function, entry):
    app = load_app(monkeypatch)
    events = []

    def main(pipes, **kwargs):
        events.append(("main", pipes.asset_key, os.environ.get("BGB_SMOKE_TEST")))
        pipes.log.info("working")
        if fails:
            raise RuntimeError("training failed")

    module = importlib.import_module(f"eeg_assets.remote.{entry}")
    monkeypatch.setattr(app, "volume", Volume(events))
    monkeypatch.setattr(app, "pipes_queue", None)
    monkeypatch.setattr(module, "main", main)
    monkeypatch.setenv("BGB_LIMIT_FILES", "7")  # a previous call's flag: not this call's
    with pytest.warns(UserWarning, match="Volume"):  # modal: .local() has no volume mounted
        returned = getattr(app, function).local(pipes_call(app, BGB_SMOKE_TEST="1"))
    assert events == [("main", "trained_model", "1"), "commit"]
    assert "BGB_LIMIT_FILES" not in os.environ
    methods = [item["message"]["method"] for item in returned["messages"]]
    assert methods == ["opened", "log", "closed"]  # the whole session, in the return value
    assert (returned["error"] or "").startswith("RuntimeError: training failed") == fails


def test_a_call_from_other_code_is_refused_before_any_work(monkeypatch):
    app = load_app(monkeypatch)
    events = []
    monkeypatch.setattr(app, "volume", Volume(events))
    with pytest.warns(UserWarning, match="Volume"):
        returned = app.train.local(pipes_call(app, code_version="0000000000000000"))
    assert returned == {"stale": {"app": "eeg-assets-train", "deployed": app.CODE_VERSION,
                                  "local": "0000000000000000"}}
    assert events == ["commit"]  # nothing trained
