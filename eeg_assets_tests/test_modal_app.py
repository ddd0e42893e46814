"""The Modal app module, imported offline: what it declares and what its functions do.

Every test imports ``eeg_assets/remote/modal_app.py`` afresh (its settings are read at import)
with the network cut off: any socket connection or name lookup fails the test. Modal itself is
never reached, so the image build, the GPU and the volume are checked as declarations only (the
launcher's end-to-end path runs against a stand-in CLI in test_trained_model.py).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import modal
import pytest

from eeg_assets.orchestration import evaluation, training

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_FILE = REPO_ROOT / "eeg_assets" / "remote" / "modal_app.py"
SETTINGS = ("EEG_ASSETS_MODAL_GPU", "EEG_ASSETS_MODAL_VOLUME", "EEG_ASSETS_MODAL_TIMEOUT_S",
            "EEG_ASSETS_MODAL_CPU", "EEG_ASSETS_MODAL_MEMORY_MB")
#: Dependencies the Dagster process needs but the container must not: it only speaks Pipes.
HOST_ONLY = {"dagster", "dagster-webserver"}
_fresh = itertools.count()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during an offline test: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


class Recorder:
    """Records calls of the image builder and ``App.function`` while the module is imported."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.functions: dict[str, dict] = {}
        for name in ("pip_install", "add_local_python_source"):
            self._spy_method(monkeypatch, modal.Image, name)
        original_slim = modal.Image.debian_slim

        def debian_slim(*args, **kwargs):
            self.calls.append(("debian_slim", args, kwargs))
            return original_slim(*args, **kwargs)

        monkeypatch.setattr(modal.Image, "debian_slim", staticmethod(debian_slim))
        original_function = modal.App.function

        def function(app, *args, **kwargs):
            decorator = original_function(app, *args, **kwargs)

            def record(f):
                self.functions[f.__name__] = kwargs
                return decorator(f)

            return record

        monkeypatch.setattr(modal.App, "function", function)

    def _spy_method(self, monkeypatch, cls, name):
        original = getattr(cls, name)

        def spy(obj, *args, **kwargs):
            self.calls.append((name, args, kwargs))
            return original(obj, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)

    def args_of(self, name: str) -> list[tuple]:
        return [args for call, args, _kwargs in self.calls if call == name]


def load_app(monkeypatch, recorder: Recorder | None = None, **settings: str):
    """Import the app file as a new module with only ``settings`` among its variables set."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(f"modal_app_under_test_{next(_fresh)}",
                                                  APP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_dependencies() -> list[str]:
    """``[project] dependencies`` of pyproject.toml (no tomllib: Python 3.10 is supported)."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    dependencies = re.findall(r'^\s*"([^"]+)"', block, re.M)
    assert "dagster-pipes==1.13.27" in dependencies  # the parse found the list
    return dependencies


def test_default_declarations(monkeypatch):
    recorder = Recorder(monkeypatch)
    app = load_app(monkeypatch, recorder)
    assert app.app.name == "eeg-assets-train"
    assert list(recorder.functions) == ["train", "evaluate"]
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
    assert app.run.info.function_name == "run"


def test_settings_come_from_the_environment(monkeypatch):
    app = load_app(monkeypatch, EEG_ASSETS_MODAL_GPU="H100", EEG_ASSETS_MODAL_VOLUME="other-vol",
                   EEG_ASSETS_MODAL_TIMEOUT_S="3600", EEG_ASSETS_MODAL_CPU="16",
                   EEG_ASSETS_MODAL_MEMORY_MB="65536")
    info = app.train.info()
    assert info.gpus == [("H100", 1)]
    assert info.timeout == 3600
    assert info.cpu == 16.0 and info.memory_mib == 65536
    assert info.volumes["/results"].name == "other-vol"


def test_the_image_installs_the_package_and_what_the_container_imports(monkeypatch):
    recorder = Recorder(monkeypatch)
    load_app(monkeypatch, recorder)
    (slim,) = [kwargs for name, _args, kwargs in recorder.calls if name == "debian_slim"]
    assert tuple(map(int, slim["python_version"].split("."))) >= (3, 10)  # requires-python
    assert recorder.args_of("add_local_python_source") == [("eeg_assets",)]
    installed = [package for args in recorder.args_of("pip_install") for package in args]
    for requirement in project_dependencies():
        name = requirement.split("=")[0].split(">")[0].split("<")[0].strip()
        if name in HOST_ONLY:
            assert not any(p.split("=")[0] == name for p in installed), name
            continue
        matches = [p for p in installed if p.split("=")[0].split(">")[0] == name]
        assert matches, f"{name} is a dependency of eeg_assets but not installed in the image"
        if "==" in requirement:  # a pinned version must be the same in the container
            assert matches == [requirement.replace(" ", "")], (requirement, matches)


def test_the_container_entry_point_needs_no_dagster():
    """The image installs dagster-pipes only: the entry point must not import dagster itself."""
    code = ("import sys, eeg_assets.remote.train_entry, eeg_assets.lib.model.train_run, "
            "eeg_assets.remote.evaluate_entry, eeg_assets.lib.model.evaluate_run; "
            "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_paths_agree_with_the_launcher(monkeypatch):
    app = load_app(monkeypatch)
    assert training.MODAL_APP == APP_FILE.resolve()
    assert app.RESULTS_MOUNT == "/results"
    assert training.MODAL_CACHE_ROOT == app.CACHE_ROOT == "/results/cache/tusz"
    assert Path(training.MODAL_RESULTS).parent == Path(app.RESULTS_MOUNT)
    assert Path(evaluation.MODAL_EVALUATION).parent == Path(app.RESULTS_MOUNT)


class Remote:
    def __init__(self, name: str, calls: list):
        self.name, self.calls = name, calls

    def remote(self, *args):
        self.calls.append((self.name, args))


@pytest.mark.parametrize("job", [None, "train", "evaluate"])
def test_local_entrypoint_forwards_pipes_and_seed_flags_only(monkeypatch, job):
    app = load_app(monkeypatch)
    calls = []
    monkeypatch.setattr(app, "train", Remote("train", calls))
    monkeypatch.setattr(app, "evaluate", Remote("evaluate", calls))
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", "ctx")
    monkeypatch.setenv("DAGSTER_PIPES_MESSAGES", "msgs")
    monkeypatch.setenv("BGB_SMOKE_TEST", "1")
    monkeypatch.setenv("BGB_LIMIT_FILES", "2")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "never-forwarded")
    monkeypatch.setenv("EEG_ASSETS_EPOCHS", "3")  # read by the launcher into the request
    app.run.info.raw_f(*([job] if job else []))
    ((called, args),) = calls
    assert called == (job or "train")
    assert args == ({"DAGSTER_PIPES_CONTEXT": "ctx", "DAGSTER_PIPES_MESSAGES": "msgs",
                     "BGB_SMOKE_TEST": "1", "BGB_LIMIT_FILES": "2"},)


def test_local_entrypoint_refuses_an_unknown_job(monkeypatch):
    app = load_app(monkeypatch)
    with pytest.raises(SystemExit, match="unknown job 'predict': use train or evaluate"):
        app.run.info.raw_f("predict")


@pytest.mark.parametrize("function, entry", [("train", "train_entry"),
                                             ("evaluate", "evaluate_entry")])
@pytest.mark.parametrize("fails", [False, True])
def test_each_function_runs_its_entry_point_and_always_commits_the_volume(monkeypatch, fails,
                                                                          function, entry):
    app = load_app(monkeypatch)
    events = []

    class Volume:
        def commit(self):
            events.append("commit")

    def main():
        events.append(("main", os.environ.get("DAGSTER_PIPES_CONTEXT"),
                       os.environ.get("BGB_SMOKE_TEST")))
        if fails:
            raise RuntimeError("training failed")

    module = importlib.import_module(f"eeg_assets.remote.{entry}")
    monkeypatch.setattr(app, "volume", Volume())
    monkeypatch.setattr(module, "main", main)
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", "before")  # restored after the test
    monkeypatch.setenv("BGB_SMOKE_TEST", "0")
    forwarded = {"DAGSTER_PIPES_CONTEXT": "ctx", "BGB_SMOKE_TEST": "1"}
    with pytest.warns(UserWarning, match="Volume"):  # modal: .local() has no volume mounted
        if fails:
            with pytest.raises(RuntimeError, match="training failed"):
                getattr(app, function).local(forwarded)
        else:
            getattr(app, function).local(forwarded)
    assert events == [("main", "ctx", "1"), "commit"]
