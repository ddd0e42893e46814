"""Channel names -> the pinned 19-channel order (channels.py), on synthetic and real TUSZ labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eeg_assets.lib.signals.channels import ChannelError, normalise_label, plan_channels
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.signals.edf import EdfRecording
from eeg_assets.synthetic.edf_writer import (
    TUSZ_EEG_ORDER, TUSZ_EXTRA_LABELS, TUSZ_SIDE_LABELS, eeg_labels,
)

PINNED = ["FP1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "FZ",
          "CZ", "PZ", "FP2", "F4", "C4", "P4", "F8", "T4", "T6", "O2"]


def _my_normalise(label: str) -> str:
    """The rule of docs/tusz.md ("Channels"), written independently: no spaces, no leading EEG,
    one reference suffix, case-insensitive, T7/T8/P7/P8 synonyms."""
    name = re.sub(r"\s+", "", label).upper()
    name = re.sub(r"^EEG", "", name)
    name = re.sub(r"-(REF|LE|AR)$", "", name)
    return {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}.get(name, name)


def test_pinned_order_is_domain_order():
    assert list(DEFAULT_CONFIG.channels) == PINNED
    assert len(set(PINNED)) == 19


@pytest.mark.parametrize("label, expected", [
    ("EEG FP1-REF", "FP1"), ("EEG FP1-LE", "FP1"), ("EEG Fp1-AR", "FP1"), ("eeg fz-ref", "FZ"),
    ("EEG T7-REF", "T3"), ("EEG T8-LE", "T4"), ("EEG P7-REF", "T5"), ("EEG P8-REF", "T6"),
    ("EEG  C3 - REF", "C3"), ("C4", "C4"), ("EEG EKG1-REF", "EKG1"), ("IBI", "IBI"),
])
def test_normalise_label(label, expected):
    assert normalise_label(label, dict(DEFAULT_CONFIG.channel_synonyms)) == expected


def test_only_one_reference_suffix_is_dropped():
    # "X-REF-LE" keeps its inner "-REF": only one suffix is a reference
    assert normalise_label("EEG C3-REF-LE") == "C3-REF"


def test_plan_maps_tusz_order_to_pinned_order_ignoring_extras():
    labels = eeg_labels() + list(TUSZ_EXTRA_LABELS) + list(TUSZ_SIDE_LABELS)
    plan = plan_channels(labels, DEFAULT_CONFIG)
    assert plan.reconstructed == {}
    for out_index, channel in enumerate(PINNED):
        source = plan.sources[out_index]
        assert _my_normalise(labels[source]) == channel
        assert plan.labels[out_index] == labels[source]
    assert plan.describe_reconstruction() == ""


@pytest.mark.parametrize("reference", ["LE", "AR", ""])
def test_plan_other_references(reference):
    labels = eeg_labels(reference=reference)
    plan = plan_channels(labels, DEFAULT_CONFIG)
    assert [labels[s] for s in plan.sources] == [
        labels[TUSZ_EEG_ORDER.index(ch)] for ch in PINNED]


def test_plan_synonyms_t7_t8_p7_p8():
    names = [{"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}.get(n, n) for n in TUSZ_EEG_ORDER]
    labels = eeg_labels(names)
    plan = plan_channels(labels, DEFAULT_CONFIG)
    assert plan.labels[PINNED.index("T3")] == "EEG T7-REF"
    assert plan.labels[PINNED.index("T4")] == "EEG T8-REF"
    assert plan.labels[PINNED.index("T5")] == "EEG P7-REF"
    assert plan.labels[PINNED.index("T6")] == "EEG P8-REF"


def test_plan_reconstructs_fz_and_pz_from_neighbours():
    labels = eeg_labels(n for n in TUSZ_EEG_ORDER if n not in ("FZ", "PZ"))
    plan = plan_channels(labels, DEFAULT_CONFIG)
    assert plan.sources[PINNED.index("FZ")] is None
    assert plan.sources[PINNED.index("PZ")] is None
    assert plan.reconstructed == {"FZ": ("F3", "F4"), "PZ": ("P3", "P4")}
    assert plan.describe_reconstruction() == "FZ=mean(F3,F4); PZ=mean(P3,P4)"
    assert plan.labels[PINNED.index("FZ")] == ""


@pytest.mark.parametrize("missing, named", [
    (("O1",), ("O1",)), (("CZ",), ("CZ",)), (("T3",), ("T3",)),
    # FZ alone is reconstructable, but not without F3: both are named
    (("FZ", "F3"), ("FZ", "F3")),
])
def test_plan_other_missing_channel_is_an_error_naming_it(missing, named):
    labels = eeg_labels(n for n in TUSZ_EEG_ORDER if n not in missing)
    with pytest.raises(ChannelError, match="missing") as info:
        plan_channels(labels, DEFAULT_CONFIG)
    for name in named:
        assert re.search(rf"\b{name}\b", str(info.value)), (name, str(info.value))


def test_plan_duplicate_channel_is_an_error():
    labels = eeg_labels() + ["EEG T7-REF"]  # T7 is T3, which is present already
    with pytest.raises(ChannelError, match="duplicate.*T3"):
        plan_channels(labels, DEFAULT_CONFIG)


def test_plan_without_reconstruction_rules_requires_fz():
    config = CacheConfig(reconstructable=())
    labels = eeg_labels(n for n in TUSZ_EEG_ORDER if n != "FZ")
    with pytest.raises(ChannelError, match="FZ"):
        plan_channels(labels, config)


# --------------------------------------------------------------------------------------------
# Real TUSZ headers (186 files)
# --------------------------------------------------------------------------------------------

def _header_labels(path: Path) -> list[str]:
    """Signal labels read from the raw EDF header bytes, without the EDF+ annotation signal."""
    raw = path.read_bytes()
    ns = int(raw[252:256].decode().strip())
    labels = [raw[256 + 16 * i: 256 + 16 * (i + 1)].decode("ascii").strip() for i in range(ns)]
    return [label for label in labels if label != "EDF Annotations"]


def test_plan_succeeds_on_every_real_tusz_header(real_data):
    edfs = sorted((real_data / "tusz_headers").rglob("*.edf"))
    assert len(edfs) == 186
    reconstructed_files, references = [], set()
    for edf in edfs:
        expected_labels = _header_labels(edf)
        with EdfRecording(edf) as recording:
            labels = recording.labels
        assert [label.strip() for label in labels] == expected_labels, edf.name
        plan = plan_channels(labels, DEFAULT_CONFIG)
        names = [_my_normalise(label) for label in expected_labels]
        for out_index, channel in enumerate(PINNED):
            if channel in names:
                assert plan.sources[out_index] == names.index(channel), (edf.name, channel)
            else:
                assert plan.sources[out_index] is None, (edf.name, channel)
        references.update(re.findall(r"-(REF|LE)$", expected_labels[0]))
        if plan.reconstructed:
            reconstructed_files.append(edf.name)
            assert len(expected_labels) == 18
            assert plan.reconstructed == {"FZ": ("F3", "F4"), "PZ": ("P3", "P4")}
    assert reconstructed_files == ["aaaaapks_s013_t002.edf"]
    assert references == {"REF", "LE"}
