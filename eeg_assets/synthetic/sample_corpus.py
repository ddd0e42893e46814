"""A small, deterministic, TUSZ-format sample corpus with synthetic EEG and learnable seizures.

``write_sample_corpus(out)`` writes ``out/edf/{train,dev,eval}/<patient>/<sNNN_YYYY>/<montage>/``
``<patient>_<sNNN>_<tNNN>.edf`` with ``.csv_bi`` and ``.csv`` annotations beside each EDF, in the
formats of TUSZ v2.0 (docs/tusz.md, "Corpus layout and splits" and "Annotation files"), and
returns a :class:`SampleCorpusSummary` that lists every recording with its seizure events, so
tests can compute the labels they expect.

It reproduces what the real corpus throws at a reader:

- signal label sets copied from real TUSZ headers (18-36 signals): ``EEG FP1-REF`` in
  ``01_tcp_ar``/``03_tcp_ar_a``, ``EEG FP1-LE`` in ``02_tcp_le``, extra electrodes (``EEG T1-REF``,
  ``EEG A1-REF``, ``EEG ROC-REF``, ...), ``EEG EKG1-REF``, ``EMG-REF``, ``PHOTIC-REF``, unused
  numbered inputs, and the 1 Hz side channels ``IBI``, ``BURSTS``, ``SUPPR``;
- one recording with the 10-10 names T7/T8/P7/P8, one without Fz and Pz (18 signals);
- EEG at 250, 256, 400 and 512 Hz; physical ranges as TUSZ writes them per rate;
- a 45 s recording (shorter than one 60 s window), seizure-free recordings (one ``bckg`` term),
  seizures longer than 70 s (so some windows lie fully inside one), every seizure type of the
  label set used here (fnsz, cpsz, gnsz, absz, tcsz and the rare mysz);
- in ``eval``: a recording annotated by ``.csv`` only, and one whose header start date reads
  ``01:01:85`` (colons, bytes 168-175), which strict EDF readers refuse.

The EEG is a 1/f background with a posterior alpha rhythm, eye blinks, bursts of muscle activity
and a little 60 Hz mains. A seizure is a rhythmic discharge (sharp waves, spike-and-wave or
polyspike-and-wave by type) whose frequency drifts down (about 7 -> 3 Hz) while its amplitude builds
up to 2-5x the background; focal seizures start at one electrode and spread to their neighbours
(the ``.csv`` gives each bipolar channel its own onset), generalised ones start everywhere at once.
Onsets and offsets fall at fractional seconds. The background is attenuated after a seizure.

Every byte is reproducible: each recording's random generator is seeded from its name, the EDF
header fields are fixed, and :mod:`~eeg_assets.synthetic.edf_writer` digitises the samples itself
(round half to even, clipped) and writes the annotation files.

======  ==================  ====  =====  ======================================================
split   stem                Hz    s      seizures (start-stop s, type) / quirk
======  ==================  ====  =====  ======================================================
train   aaaaabtq_s001_t000  256   420    112.4817-208.0931 fnsz (focus T3)
train   aaaaabtq_s001_t001  256   300    none
train   aaaaacwe_s002_t000  250   360    48.3125-87.7402 gnsz; 231.0764-266.9288 cpsz (F8)
train   aaaaadgn_s001_t000  250   330    121.5516-203.3870 cpsz (T4); 02_tcp_le, ``-LE`` labels
train   aaaaaeyr_s003_t000  256   240    61.2344-73.0059 absz; 170.8867-183.4414 absz
train   aaaaafms_s001_t000  512   300    137.6641-229.2070 tcsz; T7/T8/P7/P8 names
train   aaaaafms_s001_t001  512   180    none; T7/T8/P7/P8 names
train   aaaaagzk_s001_t000  400   300    84.9025-135.3750 fnsz (F3)
train   aaaaahpc_s002_t000  256   270    150.3398-196.0586 fnsz (T5); no Fz, no Pz
train   aaaaaivj_s001_t000  256   45     none; shorter than one window
train   aaaaajxu_s001_t000  250   360    52.7280-62.1640 mysz; 244.4120-276.0480 fnsz (C4)
train   aaaaakrd_s001_t000  256   420    none
dev     aaaaalnf_s001_t000  256   300    96.1914-181.5430 fnsz (T4)
dev     aaaaalnf_s001_t001  256   180    none
dev     aaaaamcy_s002_t000  250   300    70.4360-106.9880 gnsz; 214.2520-223.3960 mysz
dev     aaaaanvb_s001_t000  400   240    131.8075-173.2950 cpsz (F7)
dev     aaaaanvb_s001_t001  400   180    none
dev     aaaaaopw_s001_t000  250   300    118.6240-190.3600 tcsz; 02_tcp_le, ``-LE`` labels
eval    aaaaaqhs_s001_t000  256   240    58.7305-134.4023 fnsz (P4)
eval    aaaaaqhs_s001_t001  256   120    40.9141-54.6523 absz; ``.csv`` only
eval    aaaaarjw_s002_t000  512   180    96.2480-127.5645 gnsz; start date ``01:01:85``
eval    aaaaasxe_s001_t000  256   180    none
======  ==================  ====  =====  ======================================================

Totals (patients / recordings / minutes / seizures): train 10 / 12 / 58.8 / 11,
dev 4 / 6 / 25 / 5, eval 3 / 4 / 12 / 3.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.synthetic.edf_writer import (
    TUSZ_DIGITAL_RANGE, Event, patch_start_date, write_annotation, write_edf_signals,
)

SPLITS = ("train", "dev", "eval")
CORPUS_SEED = 20_130_101

# ---------------------------------------------------------------------------------------------
# Public summary
# ---------------------------------------------------------------------------------------------

#: Keys of :attr:`SampleRecording.quirks`.
QUIRK_TEN_TEN_NAMES = "ten_ten_names"      # T7/T8/P7/P8 instead of T3/T4/T5/T6
QUIRK_NO_FZ_PZ = "no_fz_pz"                # Fz and Pz both missing
QUIRK_SHORT = "short"                      # shorter than one 60 s window
QUIRK_CSV_ONLY = "csv_only"                # no .csv_bi, only the per-channel .csv
QUIRK_COLON_DATE = "colon_start_date"      # header start date "01:01:85"


@dataclass(frozen=True)
class SampleRecording:
    """One written recording; ``seizures`` are exactly the (start, stop) seconds in its files."""

    split: str
    stem: str
    path: Path                                  # the EDF file
    montage: str
    fs: int                                     # rate of every EEG signal (side channels: 1 Hz)
    duration_s: float                           # EDF duration == annotation "# duration"
    n_signals: int
    seizures: tuple[tuple[float, float], ...]
    seizure_labels: tuple[str, ...]             # TUSZ type of each seizure, same order
    quirks: tuple[str, ...]

    @property
    def patient(self) -> str:
        return self.stem.split("_", 1)[0]

    @property
    def annotation_paths(self) -> tuple[Path, ...]:
        """The annotation files written beside the EDF (``.csv_bi`` first when present)."""
        suffixes = (".csv",) if QUIRK_CSV_ONLY in self.quirks else (".csv_bi", ".csv")
        return tuple(self.path.with_suffix(s) for s in suffixes)


@dataclass(frozen=True)
class SampleCorpusSummary:
    """What :func:`write_sample_corpus` wrote under ``root`` (``<out>/edf``)."""

    root: Path
    recordings: tuple[SampleRecording, ...]

    def split(self, name: str) -> tuple[SampleRecording, ...]:
        return tuple(r for r in self.recordings if r.split == name)

    def __str__(self) -> str:
        lines = [f"sample TUSZ corpus in {self.root}",
                 f"{'split':<6} {'patients':>8} {'recordings':>10} {'hours':>6} {'seizures':>8} "
                 f"{'seizure min':>11}  rates (Hz)"]
        for name in SPLITS:
            recordings = self.split(name)
            hours = sum(r.duration_s for r in recordings) / 3600
            events = [event for r in recordings for event in r.seizures]
            seizure_min = sum(stop - start for start, stop in events) / 60
            rates = ", ".join(str(fs) for fs in sorted({r.fs for r in recordings}))
            lines.append(f"{name:<6} {len({r.patient for r in recordings}):>8} "
                         f"{len(recordings):>10} {hours:>6.2f} {len(events):>8} "
                         f"{seizure_min:>11.1f}  {rates}")
        quirky = [f"{r.stem} ({', '.join(r.quirks)})" for r in self.recordings if r.quirks]
        lines.append("quirks: " + "; ".join(quirky))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Montage and channel facts
# ---------------------------------------------------------------------------------------------

#: The 19 scalp electrodes in the project's pinned order, with rough positions on a flat scalp
#: map (x: left -1 .. right +1, y: back -1 .. front +1); distances on it shape focal seizures.
_ELECTRODES: dict[str, tuple[float, float]] = {
    "FP1": (-0.3, 0.95), "F3": (-0.4, 0.5), "C3": (-0.5, 0.0), "P3": (-0.4, -0.5),
    "F7": (-0.8, 0.6), "T3": (-1.0, 0.0), "T5": (-0.8, -0.6), "O1": (-0.3, -0.95),
    "FZ": (0.0, 0.5), "CZ": (0.0, 0.0), "PZ": (0.0, -0.5),
    "FP2": (0.3, 0.95), "F4": (0.4, 0.5), "C4": (0.5, 0.0), "P4": (0.4, -0.5),
    "F8": (0.8, 0.6), "T4": (1.0, 0.0), "T6": (0.8, -0.6), "O2": (0.3, -0.95),
}
_ELECTRODE_NAMES = tuple(_ELECTRODES)
_POSITIONS = np.array(list(_ELECTRODES.values()))
_TEN_TEN_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
_TEN_TWENTY_NAMES = {new: old for old, new in _TEN_TEN_NAMES.items()}

#: The 22 channels of the TCP bipolar montage, as the per-channel ``.csv`` files name them.
_TCP_CHANNELS: tuple[tuple[str, str], ...] = (
    ("FP1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"),
    ("FP2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2"),
    ("A1", "T3"), ("T3", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T4"), ("T4", "A2"),
    ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"),
    ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
)

#: Extra electrodes record mostly what their nearest scalp electrode records.
_NEAREST_ELECTRODE = {
    "A1": "T3", "A2": "T4", "T1": "F7", "T2": "F8", "SP1": "F7", "SP2": "F8",
    "PG1": "F7", "PG2": "F8", "ROC": "FP2", "LOC": "FP1", "OZ": "O1", "C3P": "C3", "C4P": "C4",
}
_SIDE_CHANNEL_UNITS = {"IBI": "sec", "BURSTS": "brst/min", "SUPPR": "%"}
_SIDE_CHANNELS = tuple(_SIDE_CHANNEL_UNITS)

#: Physical range of the EEG signals as TUSZ headers give it per sampling rate (max, min: the
#: 8-character header fields cut the minimum's last digit).
_PHYSICAL_RANGE_UV = {250: (4999.847, -4999.84), 256: (5482.288, -5482.28),
                      400: (29483.11, -29483.0), 512: (5482.288, -5482.28)}
_PREFILTER = "HP:0.000 Hz LP:0.0 Hz N:0.0"


def _token(label: str) -> str:
    """``'EEG T7-REF'`` -> ``'T7'``, ``'EMG-REF'`` -> ``'EMG'``, ``'PHOTIC PH'`` unchanged."""
    name = label.upper().removeprefix("EEG ")
    return name.split("-", 1)[0] if "-" in name else name


def _ref(*names: str) -> tuple[str, ...]:
    return tuple(f"EEG {name}-REF" for name in names)


_CORE16 = ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4",
           "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6")

#: Signal label sets, each copied from a real TUSZ header (named in the comment).
_LABEL_SETS: dict[str, tuple[str, ...]] = {
    # aaaaaool_s002_t000, 01_tcp_ar, 256 Hz
    "ar27": _ref(*_CORE16, "T1", "T2", "FZ", "CZ", "PZ", "EKG1", "A1", "A2") + _SIDE_CHANNELS,
    # aaaaaool_s007_t000, 01_tcp_ar, 256 Hz
    "ar28": (_ref(*_CORE16, "T1", "T2", "FZ", "CZ", "PZ", "EKG1", "A1", "A2")
             + ("PHOTIC-REF",) + _SIDE_CHANNELS),
    # aaaaaool_s003_t000, 01_tcp_ar, 250 Hz
    "ar30": (_ref(*_CORE16, "A1", "A2", "FZ", "CZ", "PZ", "ROC", "LOC", "EKG1", "T1", "T2")
             + ("PHOTIC-REF",) + _SIDE_CHANNELS),
    # aaaaaool_s005_t000, 01_tcp_ar, 256 Hz
    "ar33": _ref(*_CORE16, "T1", "T2", "FZ", "CZ", "PZ", "EKG1", "C3P", "C4P", "SP1", "SP2",
                 "A1", "A2", "31", "32") + _SIDE_CHANNELS,
    # aaaaahln_s003_t001, 01_tcp_ar, 250 Hz
    "ar36": (_ref(*_CORE16, "A1", "A2", "FZ", "CZ", "PZ", "ROC", "LOC", "EKG1") + ("EMG-REF",)
             + _ref("26", "27", "28", "29", "30", "T1", "T2") + ("PHOTIC-REF",) + _SIDE_CHANNELS),
    # aaaaapks_s013_t000, 03_tcp_ar_a, 256 Hz
    "ar_a31": _ref(*_CORE16, "T1", "T2", "FZ", "CZ", "PZ", "EKG1", "C3P", "C4P",
                   "29", "30", "31", "32") + _SIDE_CHANNELS,
    # aaaaahln_s002_t000, 03_tcp_ar_a, 400 Hz
    "ar_a32": _ref(*_CORE16, "FZ", "CZ", "PZ", *(str(i) for i in range(20, 33))),
    # aaaaapks_s013_t002, 03_tcp_ar_a, 256 Hz: the file without Fz and Pz
    "ar_a18": _ref(*_CORE16, "CZ", "EKG1"),
    # aaaaahln_s001_t000, 02_tcp_le, 250 Hz, without its eight DC channels
    "le33": tuple(f"EEG {name}-LE" for name in (
        "FP1", "FP2", "F3", "F4", "C3", "C4", "A1", "A2", "P3", "P4", "O1", "O2", "F7", "F8",
        "T3", "T4", "T5", "T6", "FZ", "CZ", "PZ", "OZ", "PG1", "PG2", "EKG",
        "26", "27", "28", "29", "30", "31", "32")) + ("PHOTIC PH",),
}


def _with_ten_ten_names(labels: tuple[str, ...]) -> tuple[str, ...]:
    """The same signals as newer headers name them: T7/T8/P7/P8 for T3/T4/T5/T6."""
    renamed = []
    for label in labels:
        token = _token(label)
        new = _TEN_TEN_NAMES.get(token)
        renamed.append(label.replace(f" {token}-", f" {new}-") if new else label)
    return tuple(renamed)


_LABEL_SETS["ar28_ten_ten"] = _with_ten_ten_names(_LABEL_SETS["ar28"])

# ---------------------------------------------------------------------------------------------
# Seizure types
# ---------------------------------------------------------------------------------------------

def _unit_waveform(shape: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The 2*pi-periodic ``shape`` with zero mean and unit RMS, so gains are in background RMS."""
    grid = shape(np.linspace(0.0, 2 * np.pi, 4096, endpoint=False))
    mean, rms = grid.mean(), grid.std()
    return lambda phase: (shape(phase) - mean) / rms


def _bump(phase: np.ndarray, centre: float, width: float) -> np.ndarray:
    wrapped = np.mod(phase - centre + np.pi, 2 * np.pi) - np.pi
    return np.exp(-0.5 * (wrapped / width) ** 2)


_SHARP_WAVES = _unit_waveform(
    lambda p: np.cos(p) + 0.5 * np.cos(2 * p) + 0.25 * np.cos(3 * p))
_SPIKE_AND_WAVE = _unit_waveform(
    lambda p: _bump(p, 0.0, 0.2) + 0.7 * _bump(p, 2.2, 0.7))
_POLYSPIKE_AND_WAVE = _unit_waveform(
    lambda p: _bump(p, 0.0, 0.12) + 0.8 * _bump(p, 0.7, 0.12) + 0.6 * _bump(p, 1.4, 0.12)
    + 0.8 * _bump(p, 3.4, 0.7))


@dataclass(frozen=True)
class _SeizureStyle:
    waveform: Callable[[np.ndarray], np.ndarray]
    freq_hz: tuple[float, float]      # at onset, at offset: discharges slow down as they evolve
    gain: tuple[float, float]         # RMS in background-RMS units, at onset and once built up
    field_radius: float | None        # focal field on the scalp map; None: generalised


_STYLES = {
    "fnsz": _SeizureStyle(_SHARP_WAVES, (7.0, 3.5), (2.0, 4.5), 1.0),
    "cpsz": _SeizureStyle(_SHARP_WAVES, (6.0, 3.0), (2.2, 4.5), 1.2),
    "gnsz": _SeizureStyle(_SPIKE_AND_WAVE, (5.0, 3.0), (2.5, 4.5), None),
    "absz": _SeizureStyle(_SPIKE_AND_WAVE, (3.6, 3.0), (4.0, 4.5), None),
    "tcsz": _SeizureStyle(_SHARP_WAVES, (8.0, 3.5), (2.0, 5.0), None),
    "mysz": _SeizureStyle(_POLYSPIKE_AND_WAVE, (4.5, 3.5), (3.5, 4.0), None),
}
#: A focal discharge reaches the edge of its field this many seconds after onset.
_FOCAL_SPREAD_S = 12.0
#: Electrodes weaker than this share of the focus are not involved (and not annotated).
_MIN_INVOLVEMENT = 0.25


@dataclass(frozen=True)
class _Seizure:
    start: float
    stop: float
    label: str
    focus: str | None = None          # onset electrode of a focal seizure

    def field(self) -> tuple[np.ndarray, np.ndarray]:
        """Per electrode (pinned order): involvement weight (0 = not involved), onset delay (s)."""
        radius = _STYLES[self.label].field_radius
        if radius is None:
            # Generalised discharges are usually frontally predominant.
            return 0.75 + 0.25 * (_POSITIONS[:, 1] + 1) / 2, np.zeros(len(_ELECTRODES))
        distance = np.hypot(*(_POSITIONS - _ELECTRODES[self.focus]).T)
        weight = np.exp(-(distance / radius) ** 2)
        weight[weight < _MIN_INVOLVEMENT] = 0.0
        # The spread must finish well before the end, or the last electrodes would barely join.
        spread_s = min(_FOCAL_SPREAD_S, 0.5 * (self.stop - self.start))
        return weight, np.round(spread_s * np.minimum(distance / radius, 1.0), 4)


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _RecordingSpec:
    split: str
    patient: str
    session: str                      # "s001_2013": session number and year
    montage: str
    take: int
    fs: int
    duration_s: int                   # whole seconds: EDF data records last 1 s
    label_set: str
    seizures: tuple[_Seizure, ...] = ()
    csv_only: bool = False
    colon_date: bool = False

    @property
    def stem(self) -> str:
        return f"{self.patient}_{self.session.split('_')[0]}_t{self.take:03d}"

    @property
    def quirks(self) -> tuple[str, ...]:
        labels = _LABEL_SETS[self.label_set]
        tokens = {_token(label) for label in labels}
        flags = ((QUIRK_TEN_TEN_NAMES, "T7" in tokens),
                 (QUIRK_NO_FZ_PZ, not {"FZ", "PZ"} & tokens),
                 (QUIRK_SHORT, self.duration_s < 60),
                 (QUIRK_CSV_ONLY, self.csv_only),
                 (QUIRK_COLON_DATE, self.colon_date))
        return tuple(name for name, present in flags if present)


_S = _Seizure
_RECORDINGS: tuple[_RecordingSpec, ...] = (
    _RecordingSpec("train", "aaaaabtq", "s001_2013", "01_tcp_ar", 0, 256, 420, "ar27",
                   (_S(112.4817, 208.0931, "fnsz", "T3"),)),
    _RecordingSpec("train", "aaaaabtq", "s001_2013", "01_tcp_ar", 1, 256, 300, "ar27"),
    _RecordingSpec("train", "aaaaacwe", "s002_2011", "01_tcp_ar", 0, 250, 360, "ar30",
                   (_S(48.3125, 87.7402, "gnsz"), _S(231.0764, 266.9288, "cpsz", "F8"))),
    _RecordingSpec("train", "aaaaadgn", "s001_2008", "02_tcp_le", 0, 250, 330, "le33",
                   (_S(121.5516, 203.3870, "cpsz", "T4"),)),
    _RecordingSpec("train", "aaaaaeyr", "s003_2014", "03_tcp_ar_a", 0, 256, 240, "ar_a31",
                   (_S(61.2344, 73.0059, "absz"), _S(170.8867, 183.4414, "absz"))),
    _RecordingSpec("train", "aaaaafms", "s001_2015", "01_tcp_ar", 0, 512, 300, "ar28_ten_ten",
                   (_S(137.6641, 229.2070, "tcsz"),)),
    _RecordingSpec("train", "aaaaafms", "s001_2015", "01_tcp_ar", 1, 512, 180, "ar28_ten_ten"),
    _RecordingSpec("train", "aaaaagzk", "s001_2009", "03_tcp_ar_a", 0, 400, 300, "ar_a32",
                   (_S(84.9025, 135.3750, "fnsz", "F3"),)),
    _RecordingSpec("train", "aaaaahpc", "s002_2012", "03_tcp_ar_a", 0, 256, 270, "ar_a18",
                   (_S(150.3398, 196.0586, "fnsz", "T5"),)),
    _RecordingSpec("train", "aaaaaivj", "s001_2016", "01_tcp_ar", 0, 256, 45, "ar33"),
    _RecordingSpec("train", "aaaaajxu", "s001_2010", "01_tcp_ar", 0, 250, 360, "ar36",
                   (_S(52.7280, 62.1640, "mysz"), _S(244.4120, 276.0480, "fnsz", "C4"))),
    _RecordingSpec("train", "aaaaakrd", "s001_2017", "01_tcp_ar", 0, 256, 420, "ar27"),
    _RecordingSpec("dev", "aaaaalnf", "s001_2013", "01_tcp_ar", 0, 256, 300, "ar27",
                   (_S(96.1914, 181.5430, "fnsz", "T4"),)),
    _RecordingSpec("dev", "aaaaalnf", "s001_2013", "01_tcp_ar", 1, 256, 180, "ar27"),
    _RecordingSpec("dev", "aaaaamcy", "s002_2011", "01_tcp_ar", 0, 250, 300, "ar30",
                   (_S(70.4360, 106.9880, "gnsz"), _S(214.2520, 223.3960, "mysz"))),
    _RecordingSpec("dev", "aaaaanvb", "s001_2009", "03_tcp_ar_a", 0, 400, 240, "ar_a32",
                   (_S(131.8075, 173.2950, "cpsz", "F7"),)),
    _RecordingSpec("dev", "aaaaanvb", "s001_2009", "03_tcp_ar_a", 1, 400, 180, "ar_a32"),
    _RecordingSpec("dev", "aaaaaopw", "s001_2008", "02_tcp_le", 0, 250, 300, "le33",
                   (_S(118.6240, 190.3600, "tcsz"),)),
    _RecordingSpec("eval", "aaaaaqhs", "s001_2014", "01_tcp_ar", 0, 256, 240, "ar28",
                   (_S(58.7305, 134.4023, "fnsz", "P4"),)),
    _RecordingSpec("eval", "aaaaaqhs", "s001_2014", "01_tcp_ar", 1, 256, 120, "ar28",
                   (_S(40.9141, 54.6523, "absz"),), csv_only=True),
    _RecordingSpec("eval", "aaaaarjw", "s002_2004", "01_tcp_ar", 0, 512, 180, "ar27",
                   (_S(96.2480, 127.5645, "gnsz"),), colon_date=True),
    _RecordingSpec("eval", "aaaaasxe", "s001_2012", "03_tcp_ar_a", 0, 256, 180, "ar_a31"),
)


def write_sample_corpus(out: Path) -> SampleCorpusSummary:
    """Write the corpus under ``out/edf`` (created if missing) and describe what was written.

    Files of an earlier run are overwritten with identical bytes. Raises ``ValueError`` if
    ``out/edf`` holds any file this corpus does not write, so it never mixes with real data.
    """
    root = Path(out) / "edf"
    planned = {_edf_path(root, spec).with_suffix(suffix)
               for spec in _RECORDINGS for suffix in _suffixes(spec)}
    if root.exists():
        foreign = sorted(p for p in root.rglob("*") if p.is_file() and p not in planned)
        if foreign:
            raise ValueError(
                f"{root} already holds {len(foreign)} file(s) that the sample corpus does not "
                f"write (e.g. {foreign[0]}); refusing to mix them: choose an empty --out")
    return SampleCorpusSummary(root=root,
                               recordings=tuple(_write_recording(root, s) for s in _RECORDINGS))


def _edf_path(root: Path, spec: _RecordingSpec) -> Path:
    return root / spec.split / spec.patient / spec.session / spec.montage / f"{spec.stem}.edf"


def _suffixes(spec: _RecordingSpec) -> tuple[str, ...]:
    return (".edf", ".csv") if spec.csv_only else (".edf", ".csv_bi", ".csv")


def _write_recording(root: Path, spec: _RecordingSpec) -> SampleRecording:
    path = _edf_path(root, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = _LABEL_SETS[spec.label_set]
    rng = np.random.default_rng([CORPUS_SEED, zlib.crc32(spec.stem.encode())])
    signals = _synthesise(spec, labels, rng)
    # The colon quirk belongs to a header dated 01.01.85: repairing the separators must give a
    # date that agrees with the EDF+ "Startdate 01-JAN-1985" recording field.
    year = 1985 if spec.colon_date else int(spec.session.split("_")[1])
    write_edf_signals(path, [_signal_header(label, spec.fs) for label in labels], signals,
                      start=dt.datetime(year, 1, 1))
    if spec.colon_date:
        patch_start_date(path, b"01:01:85")
    if not spec.csv_only:
        # A seizure-free recording gets the writer's single "bckg" row, as TUSZ files have.
        write_annotation(path.with_suffix(".csv_bi"), spec.duration_s,
                         [Event(s.start, s.stop, "seiz") for s in spec.seizures])
    write_annotation(path.with_suffix(".csv"), spec.duration_s, _channel_rows(spec))
    return SampleRecording(
        split=spec.split, stem=spec.stem, path=path, montage=spec.montage, fs=spec.fs,
        duration_s=float(spec.duration_s), n_signals=len(labels),
        seizures=tuple((s.start, s.stop) for s in spec.seizures),
        seizure_labels=tuple(s.label for s in spec.seizures), quirks=spec.quirks)


# ---------------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------------

def _channel_rows(spec: _RecordingSpec) -> list[Event]:
    """Per TCP channel, seizure rows from the channel's own onset, ``bckg`` rows in between."""
    fields = [(seizure, *seizure.field()) for seizure in spec.seizures]
    rows = []
    for first, second in _TCP_CHANNELS:
        cursor = 0.0
        for seizure, weight, delay in fields:
            onsets = [delay[_ELECTRODE_NAMES.index(e)] for e in (first, second)
                      if e in _ELECTRODES and weight[_ELECTRODE_NAMES.index(e)] > 0]
            if not onsets:
                continue
            onset = round(seizure.start + min(onsets), 4)
            if onset > cursor:
                rows.append(Event(cursor, onset, "bckg", f"{first}-{second}"))
            rows.append(Event(onset, seizure.stop, seizure.label, f"{first}-{second}"))
            cursor = seizure.stop
        if cursor < spec.duration_s:
            rows.append(Event(cursor, float(spec.duration_s), "bckg", f"{first}-{second}"))
    return rows


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------

def _synthesise(spec: _RecordingSpec, labels: tuple[str, ...],
                rng: np.random.Generator) -> list[np.ndarray]:
    """Physical values (uV, or the side channels' units) of every signal, in label order."""
    fs, n = spec.fs, spec.fs * spec.duration_s
    t = np.arange(n) / fs
    background_rms = rng.uniform(20.0, 40.0)
    eeg = _background(rng, n, fs, background_rms)
    for seizure in spec.seizures:
        eeg *= _postictal_attenuation(t, seizure.stop)
    eeg += _blinks(rng, n, fs)[None, :] * _FRONTAL_WEIGHT[:, None]
    eeg += _muscle(rng, n, fs)
    for seizure in spec.seizures:
        _add_seizure(eeg, seizure, fs, background_rms, rng)
    eeg += rng.uniform(0.0, 6.0) * np.sin(2 * np.pi * 60.0 * t + rng.uniform(0, 2 * np.pi))

    tokens = [_token(label) for label in labels]
    nearby = [tok for tok in tokens if tok in _NEAREST_ELECTRODE]
    own_noise = dict(zip(nearby, _pink_noise(rng, len(nearby), n, fs) * 0.5 * background_rms))
    signals = []
    for tok in tokens:
        electrode = _TEN_TWENTY_NAMES.get(tok, tok)
        if electrode in _ELECTRODES:
            signals.append(eeg[_ELECTRODE_NAMES.index(electrode)])
        elif tok in _NEAREST_ELECTRODE:
            nearest = eeg[_ELECTRODE_NAMES.index(_NEAREST_ELECTRODE[tok])]
            signals.append(0.6 * nearest + own_noise[tok])
        elif tok in ("EKG", "EKG1"):
            signals.append(_ecg(rng, t, fs))
        elif tok == "EMG":
            signals.append(rng.normal(0.0, 15.0, n))
        elif tok.isdigit():          # an unused amplifier input: a few uV of noise
            signals.append(rng.normal(0.0, 3.0, n))
        elif tok.startswith("PHOTIC") or tok in _SIDE_CHANNELS:
            signals.append(np.zeros(spec.duration_s if tok in _SIDE_CHANNELS else n))
        else:
            raise ValueError(f"no synthesis rule for signal label {tok!r}")
    return signals


def _spectral_noise(rng: np.random.Generator, channels: int, n: int, fs: int,
                    amplitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise with the given amplitude spectrum, each channel scaled to unit RMS."""
    # White noise has independent complex Gaussian Fourier coefficients: draw those directly
    # rather than transforming white samples (one FFT instead of two).
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    coefficients = rng.standard_normal((channels, len(freqs), 2)).view(np.complex128)[..., 0]
    noise = np.fft.irfft(coefficients * amplitude(freqs), n=n, axis=-1)
    return noise / noise.std(axis=-1, keepdims=True)


def _pink_noise(rng: np.random.Generator, channels: int, n: int, fs: int) -> np.ndarray:
    # 1/f power, flattened below 0.5 Hz and rolled off above 25 Hz: scalp EEG has little
    # beta/gamma power, and the band-pass of the cache removes the slow drifts anyway.
    def amplitude(f: np.ndarray) -> np.ndarray:
        return np.where(f > 0, 1.0, 0.0) / np.sqrt(np.maximum(f, 0.5) * (1 + (f / 25.0) ** 2))
    return _spectral_noise(rng, channels, n, fs, amplitude)


#: Alpha is posterior; blinks are seen by the frontal-most electrodes.
_ALPHA_WEIGHT = np.array([{"O1": 1.0, "O2": 1.0, "P3": 0.6, "P4": 0.6, "PZ": 0.6, "T5": 0.5,
                           "T6": 0.5, "C3": 0.25, "C4": 0.25, "CZ": 0.25}.get(e, 0.1)
                          for e in _ELECTRODES])
_FRONTAL_WEIGHT = np.array([{"FP1": 1.0, "FP2": 1.0, "F7": 0.35, "F8": 0.35, "F3": 0.35,
                             "F4": 0.35, "FZ": 0.3}.get(e, 0.0) for e in _ELECTRODES])


def _background(rng: np.random.Generator, n: int, fs: int, rms: float) -> np.ndarray:
    """(19, n) referential EEG: own plus shared 1/f activity (a common reference) plus alpha."""
    pink = _pink_noise(rng, len(_ELECTRODES) + 1, n, fs)
    eeg = 0.85 * pink[:-1] + 0.5 * pink[-1]
    eeg *= rms * rng.uniform(0.8, 1.2, (len(_ELECTRODES), 1)) / eeg.std(axis=-1, keepdims=True)
    alpha_hz = rng.uniform(8.5, 10.5)
    # Narrow-band noise waxes and wanes like a real alpha rhythm.
    alpha = _spectral_noise(rng, 1, n, fs, lambda f: np.exp(-0.5 * ((f - alpha_hz) / 0.4) ** 2))
    return eeg + rms * rng.uniform(0.6, 1.0) * _ALPHA_WEIGHT[:, None] * alpha


def _postictal_attenuation(t: np.ndarray, stop: float) -> np.ndarray:
    after = np.clip(t - stop, 0.0, None)
    return np.where(t > stop, 1.0 - 0.5 * np.exp(-after / 12.0), 1.0)


def _events(rng: np.random.Generator, n: int, fs: int, mean_gap_s: float) -> np.ndarray:
    """Sample indices of a Poisson process over the recording."""
    times = np.cumsum(rng.exponential(mean_gap_s, int(n / fs / mean_gap_s) * 2 + 4)) * fs
    return times[times < n].astype(np.int64)


def _blinks(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Eye blinks: smooth deflections of 60-150 uV lasting about half a second."""
    kernel = np.exp(-0.5 * (np.arange(-fs, fs + 1) / fs / 0.12) ** 2)
    padded = np.zeros(n + 2 * fs + 1)             # room for a whole blink at either end
    for centre in _events(rng, n, fs, 9.0):
        padded[centre:centre + len(kernel)] += rng.uniform(60.0, 150.0) * kernel
    return padded[fs:fs + n]


def _muscle(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Bursts of 20-70 Hz activity (jaw clenching, chewing) over one temporal region."""
    gate = np.zeros(n)
    for onset in _events(rng, n, fs, 40.0):
        length = int(rng.uniform(1.0, 3.0) * fs)
        edges = np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.2 * fs)
        gate[onset:onset + length] = (rng.uniform(15.0, 40.0) * np.minimum(edges, 1.0))[:n - onset]
    side = "T3" if rng.random() < 0.5 else "T4"
    distance = np.hypot(*(_POSITIONS - _ELECTRODES[side]).T)
    near = np.flatnonzero(distance < 0.7)
    band = _spectral_noise(rng, len(near), n, fs, lambda f: ((f > 20) & (f < 70)).astype(float))
    muscle = np.zeros((len(_ELECTRODES), n))
    muscle[near] = (1.0 - distance[near, None]) * gate[None, :] * band
    return muscle


def _add_seizure(eeg: np.ndarray, seizure: _Seizure, fs: int, background_rms: float,
                 rng: np.random.Generator) -> None:
    """Add an evolving rhythmic discharge over ``[start, stop)`` to the (19, n) ``eeg``."""
    style = _STYLES[seizure.label]
    first, end = int(np.ceil(seizure.start * fs)), int(np.ceil(seizure.stop * fs))
    elapsed = np.arange(first, end) / fs - seizure.start
    length = seizure.stop - seizure.start
    progress = elapsed / length
    f_onset, f_offset = (f * rng.uniform(0.9, 1.1) for f in style.freq_hz)
    freq = f_onset + (f_offset - f_onset) * progress ** 0.7
    freq *= 1 + 0.04 * np.sin(2 * np.pi * elapsed / rng.uniform(4.0, 9.0)
                      + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi)
    g_onset, g_peak = style.gain
    amplitude = background_rms * (g_onset + (g_peak - g_onset) * np.minimum(progress / 0.6, 1.0))
    amplitude *= np.clip((length - elapsed) / 0.5, 0.0, 1.0)      # ends within half a second
    weight, delay = seizure.field()
    involved = np.flatnonzero(weight)
    # Each electrode joins at its own delay, ramping up over a second, slightly lagging in phase.
    ramp = np.clip((elapsed[None, :] - delay[involved, None]) / 1.0, 0.0, 1.0)
    lag = 0.3 * delay[involved, None] / max(delay.max(), 1.0)
    eeg[involved, first:end] += (weight[involved, None] * ramp * amplitude[None, :]
                                 * style.waveform(phase[None, :] - lag))


def _ecg(rng: np.random.Generator, t: np.ndarray, fs: int) -> np.ndarray:
    """P-QRS-T complexes at a slowly varying heart rate, about 1 mV."""
    rate_hz = rng.uniform(1.0, 1.5) * (1 + 0.03 * np.sin(2 * np.pi * t / rng.uniform(15, 30)))
    beat = np.mod(np.cumsum(rate_hz) / fs, 1.0)
    waves = ((0.15, 0.15, 0.025), (-0.15, 0.23, 0.008), (1.0, 0.25, 0.01),
             (-0.25, 0.27, 0.01), (0.3, 0.45, 0.04))
    trace = sum(a * np.exp(-0.5 * ((beat - centre) / width) ** 2) for a, centre, width in waves)
    return rng.uniform(600.0, 1200.0) * trace + rng.normal(0.0, 10.0, len(t))


# ---------------------------------------------------------------------------------------------
# EDF
# ---------------------------------------------------------------------------------------------

def _signal_header(label: str, fs: int) -> dict:
    header = {"label": label, "dimension": "uV", "sample_frequency": fs,
              "digital_max": TUSZ_DIGITAL_RANGE[0], "digital_min": TUSZ_DIGITAL_RANGE[1],
              "prefilter": _PREFILTER, "transducer": "Unknown"}
    if label in _SIDE_CHANNELS:
        header.update(dimension=_SIDE_CHANNEL_UNITS[label], sample_frequency=1,
                      physical_max=3276.7, physical_min=-3276.7, transducer="")
    elif label.startswith("PHOTIC"):
        header.update(physical_max=32767.0, physical_min=-32767.0)
    else:
        header["physical_max"], header["physical_min"] = _PHYSICAL_RANGE_UV[fs]
    return header

