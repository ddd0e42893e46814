"""Signal conditioning (preprocess.py): exact resampled lengths, filter responses, zero phase,
normalisation. Expected values come from the numbers of docs/tusz.md ("Preprocessing") and
scipy/numpy directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.signals.preprocess import (
    condition_channel, filter_sos, normalise_inplace, resample_ratio, resampled_length,
)
from eeg_assets.synthetic.edf_writer import noise_generator, per_label, write_recording
from eeg_assets_tests.support.expected_counts import expected_n_samples

FS = 256


@pytest.mark.parametrize("fs, expected", [
    (256, (1, 1)), (250, (128, 125)), (400, (16, 25)), (512, (1, 2)), (1000, (32, 125)),
    (500, (64, 125)), (200, (32, 25)), (256.0, (1, 1)),
])
def test_resample_ratio_is_exact(fs, expected):
    up, down = resample_ratio(fs, FS)
    assert (up, down) == expected
    assert fs * up / down == FS


@pytest.mark.parametrize("fs", [250, 256, 400, 512, 1000])
@pytest.mark.parametrize("n_seconds", [1, 59, 60, 61, 127])
def test_resampled_length_is_ceiling(fs, n_seconds):
    for n in (fs * n_seconds, fs * n_seconds + 1, fs * n_seconds + 7):
        assert resampled_length(n, fs, FS) == math.ceil(n * FS / fs) == expected_n_samples(n, fs)


@pytest.mark.parametrize("fs", [250, 256, 400, 512, 1000, 2048, 256.5, 257.3])
@pytest.mark.parametrize("n_samples", [20, 28, 29, 1_000, 250_000, 1_100_003])
def test_condition_channel_is_polyphase_resampling_then_sosfiltfilt(fs, n_samples):
    """The documented recipe, spelled with scipy's own defaults: resample_poly (Kaiser-windowed
    FIR) then sosfiltfilt (odd padding), in float32. The resampling is a matrix product (an odd
    ratio such as 257.3 Hz's 2560/2573 uses scipy's loop): it differs from upfirdn's sums by
    float32 rounding, which the 0.5 Hz high-pass carries to about 1e-5 of the signal's range; a
    shifted sample or a wrong gain would differ by far more."""
    x = (np.random.default_rng(n_samples).standard_normal(n_samples) * 40).astype(np.float32)
    up, down = resample_ratio(fs, FS)
    expected = signal.resample_poly(x, up, down) if (up, down) != (1, 1) else x
    if len(expected) <= 27:  # shorter than sosfiltfilt's padding: scipy's own error
        with pytest.raises(ValueError):
            condition_channel(x, fs, DEFAULT_CONFIG)
        return
    expected = signal.sosfiltfilt(filter_sos(DEFAULT_CONFIG), expected)
    actual = condition_channel(x, fs, DEFAULT_CONFIG)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("fs", [250, 256, 400, 512])
def test_condition_channel_length_and_dtype(fs):
    n = fs * 13 + 3
    x = np.random.default_rng(fs).standard_normal(n) * 40
    y = condition_channel(x, fs, DEFAULT_CONFIG)
    assert y.dtype == np.float32
    assert y.shape == (expected_n_samples(n, fs),)
    assert np.isfinite(y).all()


def _gain(freq: float, fs: float, config=DEFAULT_CONFIG, seconds=40) -> float:
    """Amplitude gain of the conditioning at ``freq`` (middle of the signal, no edges)."""
    t = np.arange(int(fs * seconds)) / fs
    y = condition_channel(np.sin(2 * np.pi * freq * t) * 100, fs, config)
    middle = y[len(y) // 4: 3 * len(y) // 4]
    return float(np.sqrt(2) * middle.std() / 100)


@pytest.mark.parametrize("fs", [250, 400, 512])
def test_filter_response(fs):
    assert _gain(10.0, fs) == pytest.approx(1.0, abs=0.02)      # pass band
    assert _gain(60.0, fs) < 0.02                               # notch (Q=30, zero phase: squared)
    assert _gain(55.0, fs) > 0.9                                 # the notch is narrow
    assert _gain(0.05, fs, seconds=200) < 0.02                   # below 0.5 Hz high-pass
    if fs >= 400:
        assert _gain(180.0, fs) < 0.05                           # above 128 Hz: gone after 256 Hz


def test_notch_follows_config():
    fifty = CacheConfig(notch_hz=50.0)
    assert _gain(50.0, 250, fifty) < 0.02 and _gain(60.0, 250, fifty) > 0.9
    no_notch = CacheConfig(notch_hz=None)
    assert _gain(60.0, 250, no_notch) > 0.9
    assert len(filter_sos(no_notch)) == len(filter_sos(DEFAULT_CONFIG)) - 1
    assert CacheConfig(notch_hz=50.0).version() != DEFAULT_CONFIG.version()


def test_filter_is_second_order_sections():
    sos = filter_sos(DEFAULT_CONFIG)
    assert sos.ndim == 2 and sos.shape[1] == 6
    # band-pass of order 3 = 3 sections, plus one notch section
    assert sos.shape[0] == 4


def _envelope_lag(reference: np.ndarray, other: np.ndarray, max_lag: int = 256) -> int:
    """Lag (samples) of ``other``'s envelope against ``reference``'s; positive = ``other`` later."""
    def envelope(z):
        env = np.abs(signal.hilbert(z - z.mean()))
        env = np.convolve(env, np.ones(FS) / FS, mode="same")
        return env - env.mean()
    a, b = envelope(reference), envelope(other)
    # scores[k] = sum_i a[max_lag + i] * b[k + i]: lag k - max_lag
    scores = signal.correlate(b, a[max_lag:-max_lag], mode="valid")
    return int(np.argmax(scores)) - max_lag


def _burst(t, t0=90.0, freq=1.0, width=1.5, amplitude=300.0):
    return amplitude * np.exp(-0.5 * ((t - t0) / width) ** 2) * np.sin(2 * np.pi * freq * t)


def test_zero_phase_end_to_end(tmp_path):
    """A slow seizure-like burst keeps its position in the cached, stitched signal.

    The control applies the same filter causally: it must shift the envelope by far more than
    the tolerance, or this test could not catch a causal implementation.
    """
    fs, duration = 400, 180
    background = noise_generator(seed=3, amplitude_uv=5.0, alpha_uv=0.0)
    burst_label = "EEG C3-REF"
    generator = per_label({burst_label: lambda i, label, t: _burst(t) + background(i, label, t)},
                          default=background)
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", fs=fs, duration_s=duration, generator=generator)
    [entry] = build_split(data, cache, "train", workers=1, progress=None).built
    with np.load(cache / "r_windows.npz") as npz:
        windows = npz["windows"]
    stride, width = 2560, 15360
    n = (len(windows) - 1) * stride + width
    assert n == duration * FS
    stitched = np.empty(n, np.float32)
    channel = DEFAULT_CONFIG.channels.index("C3")
    for i, window in enumerate(windows):
        stitched[i * stride: i * stride + width] = window[channel]
    # the raw signal on the 256 Hz grid, by linear interpolation (independent of the library)
    t_raw = np.arange(fs * duration) / fs
    raw = generator(0, burst_label, t_raw)
    t_256 = np.arange(n) / FS
    raw_256 = np.interp(t_256, t_raw, raw)
    lag = _envelope_lag(raw_256, stitched.astype(np.float64))
    assert abs(lag) <= 3, f"cached burst shifted by {lag} samples"
    # the burst's peak itself: at 90 s in both
    peak = np.argmax(np.convolve(np.abs(signal.hilbert(stitched)), np.ones(FS) / FS, "same"))
    assert abs(peak / FS - 90.0) < 0.5
    # control: the same band-pass + notch applied causally shifts the envelope visibly
    low, high = DEFAULT_CONFIG.bandpass_hz
    sos = np.vstack([signal.butter(3, [low, high], btype="band", fs=FS, output="sos"),
                     signal.tf2sos(*signal.iirnotch(60.0, 30.0, fs=FS))])
    causal = signal.sosfilt(sos, raw_256)
    assert _envelope_lag(raw_256, causal) > 10


def test_normalise_inplace():
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((4, 5000)) * [[1], [50], [1e-3], [7]] + [[5], [-3], [0], [100]])
    data = data.astype(np.float32)
    data[2, 10] = np.nan
    data[2, 11] = np.inf
    data[3, 100] = 1e6  # a single huge artefact: clipped to +10
    expected = data.astype(np.float64)
    expected[2, 10:12] = 0.0
    expected = (expected - expected.mean(axis=1, keepdims=True)) / (
        expected.std(axis=1, keepdims=True) + 1e-8)
    expected = np.clip(expected, -10, 10)
    out = normalise_inplace(data, DEFAULT_CONFIG)
    assert out is data and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.max() <= 10 and out.min() >= -10
    assert out[3, 100] == 10.0
    np.testing.assert_allclose(out, expected, atol=2e-4)
    np.testing.assert_allclose(out[:3].mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(out[:2].std(axis=1), 1, atol=1e-4)


def test_normalise_flat_row_becomes_zero():
    data = np.full((2, 100), 3.0, np.float32)
    data[1] = np.arange(100)
    normalise_inplace(data, DEFAULT_CONFIG)
    assert (data[0] == 0).all()
    assert np.isfinite(data).all()
