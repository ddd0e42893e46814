"""Small PNG renderings for materialization metadata (matplotlib, headless)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def category_counts_png(counts: dict[str, int], title: str) -> bytes:
    """Bar chart of windows per category."""
    fig, ax = plt.subplots(figsize=(5, 2.6))
    names = list(counts)
    colours = ["#d95f02", "#7570b3", "#1b9e77"][:len(names)]
    bars = ax.bar(names, [counts[n] for n in names], color=colours)
    ax.bar_label(bars)
    ax.set_ylabel("windows")
    ax.set_title(title)
    return _png(fig)


def window_png(window: np.ndarray, label: np.ndarray, channels: tuple[str, ...], fs: int,
               title: str) -> bytes:
    """One cached window (z-scores, stacked traces) with its seizure mask shaded."""
    n_channels, n_samples = window.shape
    t = np.arange(n_samples) / fs
    step = max(1, n_samples // 4000)  # enough points for the eye, small PNG
    fig, ax = plt.subplots(figsize=(9, 5))
    for row in range(n_channels):
        ax.plot(t[::step], window[row, ::step] * 0.3 - row * 3, lw=0.5, color="k")
    seizure = label > 0
    if seizure.any():
        ax.fill_between(t, 3, -3 * n_channels, where=seizure, color="#d95f02", alpha=0.2,
                        step="mid", label="seizure mask")
        ax.legend(loc="upper right")
    ax.set_yticks([-3 * r for r in range(n_channels)], [c.capitalize() for c in channels])
    ax.set_xlabel("seconds")
    ax.set_title(title)
    return _png(fig)


def curves_png(history: list[dict], keys: tuple[str, ...], title: str) -> bytes:
    """Per-epoch curves (e.g. losses, AUROC) from a training history."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 2.8))
    for ax, key in zip(np.atleast_1d(axes), keys):
        epochs = [h["epoch"] for h in history if key in h]
        ax.plot(epochs, [h[key] for h in history if key in h], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    # Without a layout pass the figure title sits on top of the middle subplot's title.
    fig.tight_layout()
    return _png(fig)


#: The false-alarm range that matters, on a log axis: 0 FA/24h is drawn at the left edge.
FA_AXIS = (0.1, 1000.0)


def operating_curve_png(sweep: list[dict], threshold: float, title: str,
                        scorers: tuple[tuple[str, str], ...] = (("overlap", "OVERLAP"),
                                                                ("szcore", "SzCORE")),
                        max_fa_per_24h: float | None = None) -> bytes:
    """Sensitivity (%) against false alarms per 24 h over thresholds, one line per scorer.

    ``sweep`` rows hold ``threshold`` and ``<scorer>_sensitivity_pct`` (a percentage; None where
    undefined) and ``<scorer>_fa_per_24h``; the operating ``threshold`` is marked and labelled,
    and the rule's ``max_fa_per_24h`` drawn as a vertical line. The x axis is logarithmic from
    0.1 to 1,000 FA/24h (0 is drawn at 0.1), where the operating points worth comparing lie.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    low, high = FA_AXIS
    for (scorer, label), colour in zip(scorers, ("#1b9e77", "#d95f02", "#7570b3")):
        rows = [r for r in sweep if r.get(f"{scorer}_sensitivity_pct") is not None
                and r.get(f"{scorer}_fa_per_24h") is not None]
        fa = [min(max(r[f"{scorer}_fa_per_24h"], low), high) for r in rows]
        sensitivity = [r[f"{scorer}_sensitivity_pct"] for r in rows]
        ax.plot(fa, sensitivity, marker=".", color=colour, label=label)
        for r, x, y in zip(rows, fa, sensitivity):
            if r["threshold"] == threshold:
                ax.plot([x], [y], marker="o", ms=9, mfc="none", color=colour)
                ax.annotate(f"{threshold:g}", (x, y), textcoords="offset points",
                            xytext=(6, -12), color=colour)
    if max_fa_per_24h is not None and low <= max_fa_per_24h <= high:
        ax.axvline(max_fa_per_24h, color="grey", linestyle="--", linewidth=1,
                   label=f"target {max_fa_per_24h:g} FA/24h")
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_xlabel("false alarms per 24 h (log; 0 drawn at 0.1)")
    ax.set_ylabel("sensitivity (%)")
    ax.set_ylim(-2, 102)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)
