"""A training cache of hand-written NPZs of the real geometry (19 x 15360 windows, ledger entries
as the builder writes them) with the index, manifest and balanced set the upstream assets write:
one epoch on CPU takes a second or two. Shared by the training and evaluation tests."""

from __future__ import annotations

from pathlib import Path

from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.balanced import compose_split, write_balanced
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.manifest import update_manifest
from eeg_assets.lib.model.experiment import Experiment
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets.settings import Settings
from eeg_assets.synthetic.fake_cache import write_recording

W = DEFAULT_CONFIG.window_samples
#: Seizure samples per window. Train: 4 patients, 3 partial + 2 full + 9 background windows; the
#: first three files alone still hold partial and background windows (BGB_SMOKE_TEST=1).
TRAIN_FILES = {
    "aaaaaaaa_s001_t000": [0, 4000, W, W],
    "aaaaaaab_s001_t000": [0, 0, 0, 3000],
    "aaaaaaac_s001_t000": [0, 0, 0],
    "aaaaaaad_s001_t000": [0, 8000, 0],
}
VAL_FILES = {"aaaaaaav_s001_t000": [0, 5000, W], "aaaaaaaw_s001_t000": [0, 0, 0]}
VAL_WINDOWS = sum(map(len, VAL_FILES.values()))
SHORT_TRAINING = TrainConfig(epochs=1, max_train_windows_per_epoch=16, cpu_threads=1,
                             device="cpu")
#: The Modal client the tests name in EEG_ASSETS_MODAL_CLIENT (the only mock: Modal's servers).
STAND_IN = "eeg_assets_tests.support.stand_in_modal:StandInModal"
EXPERIMENT = "test"


def experiment_of(settings: Settings, name: str = EXPERIMENT) -> Experiment:
    """An experiment with the settings' training configuration (no file: tests build their
    TrainConfig in code)."""
    return Experiment(name=name, path=Path(f"/nonexistent/{name}.toml"), train=settings.train,
                      max_fa_per_24h=settings.eval_max_fa_per_24h, file_version="")


#: The stand-in's fault switches, cleared so that a test sees only the ones it sets.
STAND_IN_SWITCHES = ("EEG_ASSETS_STAND_IN_PREEMPT", "EEG_ASSETS_STAND_IN_DEPLOYED_VERSION",
                     "EEG_ASSETS_STAND_IN_NO_TOKEN", "EEG_ASSETS_STAND_IN_DISCONNECTED",
                     "EEG_ASSETS_STAND_IN_INTERRUPT")


def write_split(cache_dir: Path, files: dict[str, list[int]]) -> None:
    """Real-size windows of noise with centred seizure masks, and the builder's ledger entries."""
    for stem, counts in files.items():
        write_recording(cache_dir, stem, counts, DEFAULT_CONFIG,
                        channels=len(DEFAULT_CONFIG.channels))


def write_cache(cache_root: Path) -> None:
    """Both splits, with the files their upstream assets write (what training is pinned to)."""
    write_split(cache_root / "train", TRAIN_FILES)
    write_split(cache_root / "val", VAL_FILES)
    for split in ("train", "val"):
        update_index(cache_root / split)
        update_manifest(cache_root / split)
    write_balanced(cache_root / "train", compose_split(cache_root / "train"))
