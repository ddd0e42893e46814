"""Raw recordings reach the volume: incremental, resumable mirroring of the local raw root.

The volume is the stand-in's :class:`HostVolume`, a folder with the three calls of Modal's volume
client that the upload uses (``batch_upload``, ``read_file``, ``remove_file``); Modal cannot be
reached from here. ``python -m eeg_assets upload-raw`` runs with the stand-in client
(``EEG_ASSETS_MODAL_CLIENT``), whose raw volume is such a folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from eeg_assets_tests.support.dagster_fixtures import sample_raw_root  # noqa: F401
from eeg_assets_tests.support.stand_in_volumes import HostVolume

from eeg_assets.lib.cache.raw_upload import UPLOAD_RECORD, sync_raw

#: Files of the sample eval split: 4 EDFs, 3 with .csv_bi and .csv, one with .csv only.
EVAL_FILES = 11


@pytest.fixture
def raw_root(sample_raw_root, tmp_path) -> Path:  # noqa: F811
    """A copy of the sample corpus (mtimes kept) that a test may change."""
    return Path(shutil.copytree(sample_raw_root, tmp_path / "edf"))


def volume_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != UPLOAD_RECORD}


def local_files(raw_root: Path, split: str) -> dict[str, bytes]:
    return {f"edf/{p.relative_to(raw_root).as_posix()}": p.read_bytes()
            for p in sorted((raw_root / split).rglob("*")) if p.is_file()}


def test_a_first_sync_mirrors_the_folders_asked_for_and_a_second_uploads_nothing(raw_root,
                                                                                 tmp_path):
    volume = HostVolume(tmp_path / "volume")
    lines: list[str] = []
    report = sync_raw(raw_root, ["eval"], volume, log=lines.append)
    assert volume_files(volume.committed) == local_files(raw_root, "eval")  # no other split
    assert len(report.uploaded) == report.files == EVAL_FILES and report.unchanged == 0
    assert report.uploaded_bytes == sum(map(len, local_files(raw_root, "eval").values()))
    assert any(line.startswith("[upload-raw] 11/11 files") for line in lines), lines
    record = json.loads((volume.committed / UPLOAD_RECORD).read_text())["files"]
    edf = next((raw_root / "eval").rglob("*.edf"))
    st = edf.stat()
    assert record[f"edf/{edf.relative_to(raw_root).as_posix()}"] == [st.st_size, st.st_mtime_ns]

    again = sync_raw(raw_root, ["eval"], volume, log=lines.append)
    assert again.uploaded == [] and again.unchanged == EVAL_FILES and again.removed == []


def test_changed_new_and_removed_files_are_mirrored(raw_root, tmp_path):
    volume = HostVolume(tmp_path / "volume")
    sync_raw(raw_root, ["eval", "dev"], volume, log=lambda line: None)
    edfs = sorted((raw_root / "eval").rglob("*.edf"))
    annotation_only_csv = next(p for p in edfs if not p.with_suffix(".csv_bi").exists())
    changed, gone = [p for p in edfs if p != annotation_only_csv][:2]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    new_annotation = annotation_only_csv.with_suffix(".csv_bi")
    new_annotation.write_text(annotation_only_csv.with_suffix(".csv").read_text())
    for path in [gone, gone.with_suffix(".csv_bi"), gone.with_suffix(".csv")]:
        path.unlink(missing_ok=True)

    report = sync_raw(raw_root, ["eval"], volume, log=lambda line: None)
    name = lambda path: f"edf/{path.relative_to(raw_root).as_posix()}"  # noqa: E731
    assert sorted(report.uploaded) == sorted([name(changed), name(new_annotation)])
    assert report.removed and all(r.startswith(f"{name(gone)[:-4]}.") for r in report.removed)
    assert {k: v for k, v in volume_files(volume.committed).items()
            if k.startswith("edf/eval/")} == local_files(raw_root, "eval")
    assert any(k.startswith("edf/dev/") for k in volume_files(volume.committed))  # untouched


class LinkDropsAfter(HostVolume):
    """The stand-in volume, with the connection lost during the ``n``-th upload batch."""

    def __init__(self, committed: Path, n: int):
        super().__init__(committed)
        self.batches_left = n

    def batch_upload(self, force: bool = False):
        self.batches_left -= 1
        if self.batches_left == 0:
            raise ConnectionError("connection to Modal lost")
        return super().batch_upload(force=force)


def test_an_interrupted_sync_resumes_with_what_is_missing(raw_root, tmp_path):
    committed = tmp_path / "volume"
    with pytest.raises(ConnectionError):
        sync_raw(raw_root, ["eval"], LinkDropsAfter(committed, 3), chunk_files=4,
                 log=lambda line: None)
    landed = volume_files(committed)
    assert len(landed) == 8  # two chunks of 4 files, with their record; the third never came
    record = json.loads((committed / UPLOAD_RECORD).read_text())["files"]
    assert sorted(record) == sorted(landed)

    report = sync_raw(raw_root, ["eval"], HostVolume(committed), chunk_files=4,
                      log=lambda line: None)
    assert len(report.uploaded) == EVAL_FILES - 8 and report.unchanged == 8
    assert volume_files(committed) == local_files(raw_root, "eval")


def test_a_missing_split_folder_is_a_clear_error(raw_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{raw_root / 'test'} is not a folder"):
        sync_raw(raw_root, ["test"], HostVolume(tmp_path / "volume"))


# ------------------------------------------------------------------------------------------------
# python -m eeg_assets upload-raw, with the stand-in for Modal's servers
# ------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[3]


def cli_env(raw_root: Path, volume: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "EEG_ASSETS_MODAL_CLIENT": "eeg_assets_tests.support.stand_in_modal:StandInModal",
            "EEG_ASSETS_RAW_ROOT": str(raw_root), "EEG_ASSETS_STAND_IN_RAW_VOLUME": str(volume),
            "EEG_ASSETS_STAND_IN_SERVER": str(volume.parent / "server"),
            "EEG_ASSETS_STAND_IN_NO_TOKEN": "", **extra}


@pytest.mark.slow
def test_upload_raw_command_uploads_then_reports_nothing_to_do(run_cli, raw_root, tmp_path):
    volume = tmp_path / "volume"
    env = cli_env(raw_root, volume)
    first = run_cli("upload-raw", "--folder", "eval", env=env)
    assert first.returncode == 0, first.stderr
    assert volume_files(volume) == local_files(raw_root, "eval")
    assert "[upload-raw] 11 files: uploaded 11" in first.stdout
    second = run_cli("upload-raw", "--folder", "eval", env=env)
    assert second.returncode == 0, second.stderr
    assert "[upload-raw] 11 files: uploaded 0 (0.00 GB, 0 MB/s), removed 0, unchanged 11" \
        in second.stdout


def test_upload_raw_without_a_token_or_a_client_says_so(run_cli, raw_root, tmp_path):
    volume = tmp_path / "volume"
    done = run_cli("upload-raw", "--folder", "eval",
                   env=cli_env(raw_root, volume, EEG_ASSETS_STAND_IN_NO_TOKEN="1"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: no Modal token: run `modal token new`"), done.stderr
    assert "Traceback" not in done.stderr
    assert not volume.exists()

    missing = run_cli("upload-raw", "--folder", "eval",
                      env=cli_env(raw_root, volume, EEG_ASSETS_MODAL_CLIENT="nowhere:Client"))
    assert missing.returncode == 1
    assert "EEG_ASSETS_MODAL_CLIENT='nowhere:Client' cannot be imported" in missing.stderr
