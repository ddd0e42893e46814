"""The cache chain's Modal app (``eeg_assets/remote/modal_cache.py``), imported offline.

As in test_modal_app.py, the app module is imported afresh with the network cut off, so the
image, the CPU functions and the volumes are checked as declarations; Modal is never reached.
The function bodies run here with their volumes replaced by recorders (``commit``/``reload``
calls), which is what Modal's own ``Function.local`` gives. The end-to-end path through the
stand-in for Modal's servers is in test_modal_chain.py.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import modal
import pytest

from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.chain import NPZ_WINDOWS
from eeg_assets.lib.cache.lease import split_lease
from eeg_assets.orchestration.backend import ModalBackend
from eeg_assets.remote import volume_layout
from eeg_assets.remote.deployment import APP_FILES, CACHE_APP as CACHE_APP_NAME
from eeg_assets_tests.support.dagster_fixtures import EVAL_STEMS, make_settings, sample_raw_root  # noqa: F401
from eeg_assets_tests.support.modal_spies import (  # noqa: F401 - no_network is a fixture
    HOST_ONLY, REPO_ROOT, Recorder, load_app_module, no_network, project_dependencies,
    spy_from_name,
)

CACHE_APP = APP_FILES[CACHE_APP_NAME]

def load_cache_app(monkeypatch, **settings: str):
    return load_app_module(monkeypatch, CACHE_APP, **settings)


def test_default_declarations(monkeypatch):
    recorder = Recorder(monkeypatch)
    app = load_cache_app(monkeypatch)
    assert app.app.name == "eeg-assets-cache"
    assert set(recorder.functions) == {"build_batch", "coordinate", "ping"}
    build = recorder.functions["build_batch"]
    assert build["cpu"] == 1.0 and build["memory"] == 4096 and build["timeout"] == 3600
    assert build["max_containers"] == 32 and build["retries"] == 2
    assert all("gpu" not in declared for declared in recorder.functions.values())  # CPU only
    for function in (app.build_batch, app.coordinate):
        info = function.info()
        assert info.gpus == [] and info.nonpreemptible is False  # restarts are idempotent
        assert {path: mount.name for path, mount in info.volumes.items()} == {
            "/data": "eeg-assets-raw", "/results": "eeg-assets-results"}
    assert app.coordinate.info().timeout == 6 * 3600
    assert not hasattr(app, "run_step")  # deployed and spawned by name: no entrypoints


def test_volumes_are_version_2_and_the_queue_and_leases_named_objects(monkeypatch):
    looked_up = spy_from_name(monkeypatch, modal.Volume, modal.Queue, modal.Dict)
    load_cache_app(monkeypatch)
    v2 = {"create_if_missing": True, "version": 2}  # hundreds of writers; v1 takes five
    assert sorted(looked_up) == sorted([
        ("Volume", "eeg-assets-raw", v2), ("Volume", "eeg-assets-results", v2),
        ("Queue", "eeg-assets-pipes", {"create_if_missing": True}),
        ("Dict", "eeg-assets-leases", {"create_if_missing": True})])


def test_settings_come_from_the_environment(monkeypatch):
    recorder = Recorder(monkeypatch)
    app = load_cache_app(monkeypatch, EEG_ASSETS_MODAL_BUILD_CPU="2",
                         EEG_ASSETS_MODAL_BUILD_MEMORY_MB="8192",
                         EEG_ASSETS_MODAL_BUILD_MAX_CONTAINERS="7",
                         EEG_ASSETS_MODAL_BUILD_TIMEOUT_S="600",
                         EEG_ASSETS_MODAL_RAW_VOLUME="raw-2", EEG_ASSETS_MODAL_VOLUME="results-2")
    build = recorder.functions["build_batch"]
    assert (build["cpu"], build["memory"], build["timeout"], build["max_containers"]) == (
        2.0, 8192, 600, 7)
    assert {path: mount.name for path, mount in app.build_batch.info().volumes.items()} == {
        "/data": "raw-2", "/results": "results-2"}


def test_the_image_has_the_build_libraries_at_this_machines_versions_and_no_torch(monkeypatch):
    """NPZ bytes depend on numpy, scipy and pyedflib: the container gets the versions here."""
    recorder = Recorder(monkeypatch)
    load_cache_app(monkeypatch)
    installed = [p for args in recorder.args_of("pip_install") for p in args]
    names = {p.split("=")[0] for p in installed}
    for pinned in ("numpy", "scipy", "pyedflib"):
        assert f"{pinned}=={version(pinned)}" in installed
    assert "dagster-pipes==1.13.27" in installed
    assert not names & (HOST_ONLY | {"torch", "timescoring"})
    for requirement in project_dependencies():  # everything else the library imports
        name = requirement.split("=")[0].split(">")[0].strip()
        if name not in HOST_ONLY | {"torch", "timescoring"}:
            assert name in names, name
    assert recorder.args_of("add_local_python_source") == [("eeg_assets",)]


def test_the_container_imports_neither_dagster_nor_torch():
    code = ("import sys, eeg_assets.remote.modal_cache, eeg_assets.remote.cache_entry, "
            "eeg_assets.remote.pipes_channel; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_paths_agree_with_the_backend(monkeypatch, tmp_path):
    app = load_cache_app(monkeypatch)
    assert (app.RAW_MOUNT, app.RESULTS_MOUNT) == ("/data", "/results")
    backend = ModalBackend(settings=make_settings(tmp_path / "raw", tmp_path / "cache"))
    assert backend.cache_dir("val") == volume_layout.CACHE_ROOT + "/val" == \
        "/results/cache/tusz/val"
    assert backend.raw_dir("val") == "/data/edf/dev"  # the cache split val is built from TUSZ dev


class Leases(dict):
    """``modal.Dict`` in one process: ``put(..., skip_if_exists=True)`` creates only."""

    def put(self, key, value, *, skip_if_exists=False):
        if skip_if_exists and key in self:
            return False
        self[key] = value
        return True


def test_a_second_run_of_a_split_waits_then_fails_naming_the_holder():
    leases, lines = Leases(), []
    with split_lease(leases, "results/cache/tusz/eval", "run-a", ttl_s=60, wait_s=0):
        with pytest.raises(Exception, match="in use by Dagster run run-a"):
            with split_lease(leases, "results/cache/tusz/eval", "run-b", ttl_s=60, wait_s=0.2,
                             poll_s=0.05, log=lines.append):
                pass
        with split_lease(leases, "results/cache/tusz/eval", "run-a", ttl_s=60, wait_s=0):
            pass  # the same run again (a restarted container): its own lease
    assert lines == ["waiting for results/cache/tusz/eval, held by Dagster run run-a"]
    assert leases == {}  # released


def test_an_expired_lease_is_taken_over():
    leases, lines = Leases(), []
    leases["k"] = {"holder": "crashed", "since": 0, "expires": 1}
    with split_lease(leases, "k", "run-b", ttl_s=60, wait_s=0, log=lines.append):
        assert leases["k"]["holder"] == "run-b"
    assert lines == ["taking over the expired lease on k of crashed"]


class VolumeCalls:
    """Records what a function does with its volume (Modal's Volume.commit / reload)."""

    def __init__(self, name: str, calls: list[str]):
        self.name, self.calls = name, calls

    def commit(self):
        self.calls.append(f"commit {self.name}")

    def reload(self):
        self.calls.append(f"reload {self.name}")


def test_build_batch_builds_onto_the_volume_and_commits(monkeypatch, tmp_path, sample_raw_root):
    app = load_cache_app(monkeypatch)
    calls: list[str] = []
    monkeypatch.setattr(app, "RAW_MOUNT", str(sample_raw_root.parent))  # .../edf/eval/...
    monkeypatch.setattr(app, "RESULTS_MOUNT", str(tmp_path))
    monkeypatch.setattr(app, "raw_volume", VolumeCalls("raw", calls))
    monkeypatch.setattr(app, "results_volume", VolumeCalls("results", calls))
    edf = next((sample_raw_root / "eval").rglob(f"{EVAL_STEMS[3]}.edf"))
    source = edf.relative_to(sample_raw_root / "eval").as_posix()
    batch = [[edf.relative_to(sample_raw_root).as_posix(), source]]
    with pytest.warns(UserWarning, match="Volume"):  # modal: .local() has no volume mounted
        (entry,) = app.build_batch.local(batch, "eval", DEFAULT_CONFIG.to_dict())
    assert calls == ["reload raw", "reload results", "commit results"]
    assert entry["source"] == source and entry["status"] == "built"
    assert (tmp_path / "cache" / "tusz" / "eval" / entry["npz_name"]).is_file()


def test_a_step_request_survives_the_pipes_round_trip(tmp_path):
    backend = ModalBackend(settings=make_settings(tmp_path / "raw", tmp_path / "cache",
                                                  notch_hz=50))
    request = backend.request(NPZ_WINDOWS, "val")
    assert type(request).from_dict(request.to_dict()) == request
    assert request.raw_folder == "dev" and request.cache.notch_hz == 50
