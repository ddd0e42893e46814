"""The one writer of TUSZ-shaped recordings (EDF + ``.csv_bi``/``.csv``): the sample corpus, the
tests and the benchmarks all write their files with it.

Real TUSZ signals are not redistributable, so every EDF here is written with pyedflib, shaped like
the corpus: ``EEG FP1-REF`` labels in the corpus's signal order, extra non-EEG signals at the EEG
rate, 1 Hz side channels (``IBI``, ``BURSTS``, ``SUPPR``), EDF+C files with 1 s data records, and
annotation files with the verbatim TUSZ header.

The building blocks::

    write_edf_signals(path, headers, signals, start=...)   # given headers and physical values
    write_edf(path, eeg_labels(), fs=250, duration_s=120, generator=noise_generator(seed=1))
    write_annotation(path.with_suffix(".csv_bi"), duration_s=120,
                     events=[Event(100.3, 110.0, "fnsz")])
    patch_start_date(path)             # the ``01:01:85`` header quirk

and :func:`write_recording`, which writes both files of one recording in one call. Everything is
deterministic: the same arguments give the same bytes. Samples are digitised here (round half to
even, clipped to the digital range), so the bytes never depend on how edflib rounds.

A *generator* is any callable ``generator(index, label, t) -> microvolts``: ``index`` is the
signal's position in the file, ``label`` its EDF label and ``t`` the sample times in seconds
(``np.arange(n) / fs``); it returns an array of the same length. :func:`write_edf` quantises to the
EDF's 16-bit range (``physical_max_uv / 32767`` per step, 0.15 uV by default, as in TUSZ).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyedflib

#: The 19 EEG channels in the order TUSZ files store them (not the cache's pinned order).
TUSZ_EEG_ORDER: tuple[str, ...] = (
    "FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2",
    "F7", "F8", "T3", "T4", "T5", "T6", "FZ", "CZ", "PZ",
)
#: Extra signals at the EEG rate that TUSZ files carry besides the 19 (11 of them: 19 + 11 + 3
#: side channels = 33 signals, a common TUSZ signal count).
TUSZ_EXTRA_LABELS: tuple[str, ...] = (
    "EEG A1-REF", "EEG A2-REF", "EEG ROC-REF", "EEG LOC-REF", "EEG EKG1-REF", "EMG-REF",
    "EEG T1-REF", "EEG T2-REF", "PHOTIC-REF", "EEG 26-REF", "EEG 27-REF",
)
#: 1 Hz side channels of TUSZ files.
TUSZ_SIDE_LABELS: tuple[str, ...] = ("IBI", "BURSTS", "SUPPR")

#: Column header of TUSZ annotation files.
ANNOTATION_COLUMNS: tuple[str, ...] = ("channel", "start_time", "stop_time", "label", "confidence")

#: Physical range of TUSZ EEG signals (uV); the digital range is the full 16 bits.
TUSZ_PHYSICAL_MAX_UV = 4999.85
#: TUSZ's digital range (max, min): symmetric, without -32768.
TUSZ_DIGITAL_RANGE = (32767, -32767)

#: Start of every written recording (fixed, so files are byte-for-byte reproducible).
DEFAULT_START = _dt.datetime(2008, 1, 1, 0, 0, 0)

Generator = Callable[[int, str, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------
# EDF
# ---------------------------------------------------------------------------------------------

def write_edf_signals(path: Path | str, headers: Sequence[dict], signals: Sequence[np.ndarray],
                      *, start: _dt.datetime = DEFAULT_START,
                      record_duration_s: float = 1.0) -> Path:
    """Digitise physical signals and write them as an EDF+C file.

    Parameters
    ----------
    path : path-like
        The EDF file to write (its folder must exist).
    headers : sequence of dict
        One pyedflib signal header per signal, in file order (``label``, ``dimension``,
        ``sample_frequency`` in Hz, ``physical_min``/``physical_max``,
        ``digital_min``/``digital_max``, ``transducer``, ``prefilter``).
    signals : sequence of ndarray
        Physical values of each signal, shape ``(n_records * sample_frequency *
        record_duration_s,)``, in the header's ``dimension`` (uV for EEG). Values are mapped
        linearly from the physical to the digital range, rounded half to even and clipped.
    start : datetime
        Recording start written to the header.
    record_duration_s : float
        Duration of one data record (s); every rate must give whole samples per record.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    per_record = []
    for header in headers:
        samples = header["sample_frequency"] * record_duration_s
        if abs(samples - round(samples)) > 1e-9:
            raise ValueError(f"{header['label']}: {header['sample_frequency']} Hz is not a whole "
                             f"number of samples per {record_duration_s} s record")
        per_record.append(int(round(samples)))
    n_records = len(signals[0]) // per_record[0]
    records = []
    for header, signal, samples in zip(headers, signals, per_record):
        if len(signal) != n_records * samples:
            raise ValueError(f"{header['label']}: {len(signal)} samples, expected "
                             f"{n_records} records of {samples}")
        p_max, p_min = header["physical_max"], header["physical_min"]
        d_max, d_min = header["digital_max"], header["digital_min"]
        digital = np.rint((signal - p_min) * (d_max - d_min) / (p_max - p_min) + d_min)
        records.append(np.clip(digital, d_min, d_max).astype(np.int16).reshape(n_records, -1))
    # One row per data record: every signal's samples of that record, in header order.
    blocks = np.ascontiguousarray(np.concatenate(records, axis=1))
    writer = pyedflib.EdfWriter(str(path), len(headers), pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(list(headers))
        if record_duration_s != 1.0:  # pyedflib's default
            with warnings.catch_warnings():  # "might alter calculated sample_frequencies": checked
                warnings.simplefilter("ignore", UserWarning)
                writer.setDatarecordDuration(record_duration_s)
        writer.setStartdatetime(start)
        for block in blocks:
            if writer.blockWriteDigitalShortSamples(block) != 0:
                raise OSError(f"{path}: pyedflib could not write a data record")
    finally:
        writer.close()
    return path


def eeg_labels(names: Iterable[str] = TUSZ_EEG_ORDER, reference: str = "REF",
               prefix: str = "EEG ") -> list[str]:
    """EDF labels such as ``'EEG FP1-REF'``; ``reference='LE'`` gives ``'EEG FP1-LE'``, ``''``
    gives ``'EEG FP1'``."""
    suffix = f"-{reference}" if reference else ""
    return [f"{prefix}{name}{suffix}" for name in names]


def noise_generator(seed: int = 0, amplitude_uv: float = 30.0, alpha_uv: float = 10.0) -> Generator:
    """Independent white noise per signal (seeded by ``seed`` and the signal index) plus a 10 Hz
    alpha rhythm with a per-signal phase: non-flat, finite, EEG-sized, and channels that differ."""

    def generate(index: int, label: str, t: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        phase = rng.uniform(0, 2 * np.pi)
        x = rng.standard_normal(len(t)) * amplitude_uv
        x += alpha_uv * np.sin(2 * np.pi * 10.0 * t + phase)
        return x

    return generate


def per_label(generators: dict[str, Generator], default: Generator | None = None) -> Generator:
    """Pick a generator by EDF label (exact match), falling back to ``default`` (noise, seed 0)."""
    fallback = default or noise_generator()

    def generate(index: int, label: str, t: np.ndarray) -> np.ndarray:
        return generators.get(label, fallback)(index, label, t)

    return generate


def write_edf(
    path: Path | str,
    labels: Sequence[str],
    fs: float,
    duration_s: float,
    generator: Generator | None = None,
    *,
    extra_labels: Sequence[str] = (),
    side_labels: Sequence[str] = (),
    side_fs: float = 1.0,
    physical_max_uv: float = TUSZ_PHYSICAL_MAX_UV,
    record_duration_s: float = 1.0,
    start: _dt.datetime = DEFAULT_START,
) -> Path:
    """Write an EDF+C file of generated signals and return its path.

    Signals, in file order: ``labels`` and then ``extra_labels`` at ``fs`` (Hz), then
    ``side_labels`` at ``side_fs``. ``generator`` (default :func:`noise_generator`) gives each
    signal's values in microvolts, which must lie within ``+-physical_max_uv``; ``duration_s``
    must be a whole number of ``record_duration_s`` records.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = generator or noise_generator()
    n_records = duration_s / record_duration_s
    if n_records < 1 or abs(n_records - round(n_records)) > 1e-9:
        raise ValueError(f"duration {duration_s} s is not a whole number of "
                         f"{record_duration_s} s data records")
    n_records = int(round(n_records))
    signals = ([(label, fs) for label in list(labels) + list(extra_labels)]
               + [(label, side_fs) for label in side_labels])
    headers, data = [], []
    for index, (label, rate) in enumerate(signals):
        n = int(round(rate * record_duration_s)) * n_records  # whole records: checked on write
        t = np.arange(n, dtype=np.float64) / rate
        values = np.asarray(generator(index, label, t), dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"generator returned shape {values.shape} for {label}, "
                             f"expected ({n},)")
        if not np.all(np.abs(values) <= physical_max_uv):
            raise ValueError(f"{label}: values exceed +-{physical_max_uv} uV")
        data.append(values)
        headers.append({
            "label": label, "dimension": "uV", "sample_frequency": rate,
            "physical_min": -physical_max_uv, "physical_max": physical_max_uv,
            "digital_max": TUSZ_DIGITAL_RANGE[0], "digital_min": TUSZ_DIGITAL_RANGE[1],
            "transducer": "", "prefilter": "",
        })
    return write_edf_signals(path, headers, data, start=start,
                             record_duration_s=record_duration_s)


def patch_start_date(path: Path | str, value: bytes = b"01:01:85") -> Path:
    """Overwrite the EDF start date (header bytes 168-175) in place, e.g. with the TUSZ quirk
    ``01:01:85`` that strict readers refuse."""
    if len(value) != 8:
        raise ValueError("the start date field is 8 bytes")
    with open(path, "r+b") as fh:
        fh.seek(168)
        fh.write(value)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One annotation row. ``start``/``stop`` may be strings to control the written text exactly
    (numbers are written with 4 decimals, as TUSZ does)."""

    start: float | str
    stop: float | str
    label: str = "seiz"
    channel: str = "TERM"
    confidence: float = 1.0


def _fmt(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.4f}"


def write_annotation(
    path: Path | str,
    duration_s: float,
    events: Iterable[Event | tuple] = (),
    *,
    columns: Sequence[str] = ANNOTATION_COLUMNS,
    background: bool = True,
    bname: str | None = None,
) -> Path:
    """Write a TUSZ ``.csv_bi``/``.csv`` annotation file with the verbatim TUSZ header.

    ``events`` are :class:`Event` or tuples ``(start, stop[, label[, channel]])``. With no events
    and ``background=True`` one ``bckg`` row spans the recording, as in real seizure-free files.
    ``columns`` may be a permutation of :data:`ANNOTATION_COLUMNS` (rows follow the same order).
    The file is written as bytes with ``\\n`` line ends, whatever the platform.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [e if isinstance(e, Event) else Event(*e) for e in events]
    if not rows and background:
        rows = [Event(0.0, float(duration_s), "bckg")]
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {bname or path.stem}",
        f"# duration = {duration_s:.4f} secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        ",".join(columns),
    ]
    for row in rows:
        fields = {"channel": row.channel, "start_time": _fmt(row.start),
                  "stop_time": _fmt(row.stop), "label": row.label,
                  "confidence": f"{row.confidence:.4f}"}
        lines.append(",".join(fields[c] for c in columns))
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


# ---------------------------------------------------------------------------------------------
# Recordings
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordingFiles:
    edf: Path
    annotation: Path | None

    @property
    def stem(self) -> str:
        return self.edf.stem


def tusz_dir(root: Path | str, patient: str = "aaaaaaaa", session: str = "s001_2015",
             montage: str = "01_tcp_ar") -> Path:
    """``root/<patient>/<session>/<montage>``: the corpus's folder layout below a split."""
    return Path(root) / patient / session / montage


def write_recording(
    directory: Path | str,
    stem: str,
    *,
    fs: float = 256,
    duration_s: float = 70,
    labels: Sequence[str] | None = None,
    generator: Generator | None = None,
    events: Iterable[Event | tuple] = (),
    annotation: str | None = ".csv_bi",
    annotation_duration_s: float | None = None,
    extra_labels: Sequence[str] = (),
    side_labels: Sequence[str] = (),
    **edf_options,
) -> RecordingFiles:
    """Write ``<directory>/<stem>.edf`` and its annotation file (``annotation`` = ``'.csv_bi'``,
    ``'.csv'`` or None for none). ``labels`` defaults to the 19 TUSZ EEG labels (``-REF``); the
    annotation's duration header defaults to ``duration_s``."""
    directory = Path(directory)
    edf = write_edf(directory / f"{stem}.edf", eeg_labels() if labels is None else labels, fs,
                    duration_s, generator, extra_labels=extra_labels, side_labels=side_labels,
                    **edf_options)
    ann = None
    if annotation is not None:
        declared = duration_s if annotation_duration_s is None else annotation_duration_s
        ann = write_annotation(directory / f"{stem}{annotation}", declared, events)
    return RecordingFiles(edf, ann)
