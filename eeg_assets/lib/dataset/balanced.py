"""The balanced training set (SeizureTransformer recipe) composed from a split's manifest.

All partial-seizure windows P; ``floor(full_ratio * |P|)`` full-seizure and
``floor(background_ratio * |P|)`` no-seizure windows drawn uniformly without replacement (all of
them when fewer exist) with ``numpy.random.default_rng(seed)``. The seizure ratio is exact, from
the composition: ``(partial + full) / total``, and ``pos_weight = sqrt((1 - r) / r)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eeg_assets.lib.config import (
    DEFAULT_BALANCE,
    DEFAULT_CONFIG,
    BalanceConfig,
    CacheConfig,
)
from eeg_assets.lib.dataset.index import (
    DatasetError,
    DatasetIndex,
    Log,
    SplitFacts,
    collect_facts,
    dumps_canonical,
    ensure_index,
)
from eeg_assets.lib.dataset.manifest import (
    CATEGORIES,
    FULL,
    NO_SEIZURE,
    PARTIAL,
    Manifest,
    ManifestTable,
    ensure_manifest,
    read_manifest_table,
)
from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.flags import EnvFlags

#: The composition as the ``balanced_dataset`` asset stores it, beside the manifest.
BALANCED_NAME = "balanced_dataset.json"
BALANCED_FORMAT = 1


class BalancedSetError(DatasetError):
    """The recipe cannot give a usable training set (e.g. no partial-seizure windows)."""


class WindowRef(NamedTuple):
    npz_name: str
    window_idx: int


@dataclass(frozen=True)
class BalancedComposition:
    """The drawn windows of each category, and how many were available."""

    partial: tuple[WindowRef, ...]
    full: tuple[WindowRef, ...]
    background: tuple[WindowRef, ...]
    partial_available: int
    full_available: int
    background_available: int
    balance: BalanceConfig
    #: Content version of the ``manifest.json`` the windows were drawn from, when known.
    manifest_version: str | None = field(default=None, compare=False)

    @property
    def windows(self) -> tuple[WindowRef, ...]:
        """Partial, then full, then background windows, each in manifest order."""
        return self.partial + self.full + self.background

    @property
    def total(self) -> int:
        return len(self.partial) + len(self.full) + len(self.background)

    @property
    def seizure_windows(self) -> int:
        return len(self.partial) + len(self.full)

    @property
    def seizure_ratio(self) -> float:
        return self.seizure_windows / self.total

    @property
    def pos_weight(self) -> float:
        return pos_weight(self.seizure_ratio)


def pos_weight(seizure_ratio: float) -> float:
    """``sqrt((1 - r) / r)``: the class weight of the seizure class (docs/cache-format.md)."""
    if not 0.0 < seizure_ratio < 1.0:
        raise ValueError(f"pos_weight needs a seizure ratio strictly between 0 and 1, "
                         f"got {seizure_ratio}")
    return math.sqrt((1.0 - seizure_ratio) / seizure_ratio)


def recipe_count(ratio: float, partial: int) -> int:
    """``int(ratio * partial)``, in exact decimal arithmetic (0.3 means 3/10, not its float)."""
    return math.floor(Fraction(repr(float(ratio))) * partial)


def restrict_manifest(manifest: Manifest, files: Iterable[str] | None) -> Manifest:
    """The manifest's entries of ``files`` only (all of them for ``None``)."""
    if files is None:
        return manifest
    wanted = set(files)
    return {category: [e for e in entries if e["cache_file"] in wanted]
            for category, entries in manifest.items()}


def compose_balanced(manifest: Manifest, balance: BalanceConfig = DEFAULT_BALANCE,
                     files: Iterable[str] | None = None) -> BalancedComposition:
    """Apply the recipe to the manifest's windows (of ``files`` only, when given)."""
    return compose_table(ManifestTable.from_manifest(restrict_manifest(manifest, files)), balance)


def compose_table(table: ManifestTable, balance: BalanceConfig = DEFAULT_BALANCE
                  ) -> BalancedComposition:
    """Apply the recipe to a manifest's windows given as a table (in manifest order).

    Only the drawn windows become :class:`WindowRef` objects, not every window of the split.
    """
    available = {category: np.flatnonzero(table.codes == code)
                 for code, category in enumerate(CATEGORIES)}
    partial = available[PARTIAL]
    if not len(partial):
        raise BalancedSetError(
            f"no partial_seizure windows ({len(available[FULL])} full_seizure, "
            f"{len(available[NO_SEIZURE])} no_seizure): the balanced recipe is defined by them")
    rng = np.random.default_rng(balance.seed)
    # Full windows are drawn before background ones; the order is part of the recipe's output.
    full = _draw(rng, available[FULL], recipe_count(balance.full_ratio, len(partial)))
    background = _draw(rng, available[NO_SEIZURE],
                       recipe_count(balance.background_ratio, len(partial)))
    if not len(background):
        raise BalancedSetError("no no_seizure windows to draw: every window would be a seizure "
                               "window and pos_weight would be 0")

    def refs(positions: np.ndarray) -> tuple[WindowRef, ...]:
        return tuple(WindowRef(table.names[f], i) for f, i in zip(
            table.file_ids[positions].tolist(), table.window_idx[positions].tolist()))

    return BalancedComposition(
        partial=refs(partial), full=refs(full), background=refs(background),
        partial_available=len(partial), full_available=len(available[FULL]),
        background_available=len(available[NO_SEIZURE]), balance=balance,
    )


def compose_split(cache_dir: Path, balance: BalanceConfig = DEFAULT_BALANCE,
                  config: CacheConfig = DEFAULT_CONFIG,
                  facts: SplitFacts | None = None) -> BalancedComposition:
    """Apply the recipe to a split's stored ``manifest.json``, recording which version it was.

    The manifest is read with :func:`~eeg_assets.lib.dataset.manifest.read_manifest_table`: not
    parsed when it is what the recorded facts give.
    """
    table, version = read_manifest_table(cache_dir, config, facts)
    return replace(compose_table(table, balance), manifest_version=version)


def _draw(rng: np.random.Generator, positions: np.ndarray, wanted: int) -> np.ndarray:
    """``wanted`` of ``positions`` (all when fewer), uniformly without replacement, in order."""
    picked = rng.choice(len(positions), size=min(wanted, len(positions)), replace=False)
    return positions[np.sort(picked)]


def write_balanced(cache_dir: Path, composition: BalancedComposition,
                   balance: BalanceConfig | None = None) -> Path:
    """Store the composition as ``balanced_dataset.json`` (manifest-style entries per category).

    ``balance``, when given, must be the configuration the composition was drawn with.
    """
    if balance is not None and balance != composition.balance:
        raise ValueError(f"composition was drawn with {composition.balance}, not {balance}")
    data = {
        "balance": asdict(composition.balance),
        "available": {PARTIAL: composition.partial_available, FULL: composition.full_available,
                      NO_SEIZURE: composition.background_available},
        **{category: [{"cache_file": ref.npz_name, "window_idx": ref.window_idx} for ref in refs]
           for category, refs in _drawn(composition).items()},
        "total": composition.total,
        "seizure_ratio": composition.seizure_ratio,
        "pos_weight": composition.pos_weight,
        "format": BALANCED_FORMAT,
    }
    if composition.manifest_version is not None:
        data["manifest_version"] = composition.manifest_version
    path = Path(cache_dir) / BALANCED_NAME
    write_bytes_atomic(path, dumps_canonical(data))
    return path


def read_balanced(cache_dir: Path) -> BalancedComposition:
    """The stored composition; its ratio and weight must be the ones its windows give."""
    path = Path(cache_dir) / BALANCED_NAME
    try:
        data = json.loads(path.read_bytes())
        drawn = {category: tuple(WindowRef(e["cache_file"], e["window_idx"])
                                 for e in data[category])
                 for category in (PARTIAL, FULL, NO_SEIZURE)}
        composition = BalancedComposition(
            partial=drawn[PARTIAL], full=drawn[FULL], background=drawn[NO_SEIZURE],
            partial_available=data["available"][PARTIAL], full_available=data["available"][FULL],
            background_available=data["available"][NO_SEIZURE],
            balance=BalanceConfig(**data["balance"]),
            manifest_version=data.get("manifest_version"))
    except FileNotFoundError:
        raise BalancedSetError(f"missing {BALANCED_NAME}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BalancedSetError(f"corrupt {BALANCED_NAME}: {exc!r}") from None
    # compose_balanced never gives a set without partial or background windows.
    if (data.get("format") != BALANCED_FORMAT or not composition.partial
            or not composition.background or data.get("total") != composition.total
            or data.get("seizure_ratio") != composition.seizure_ratio
            or data.get("pos_weight") != composition.pos_weight):
        raise BalancedSetError(f"corrupt {BALANCED_NAME}: its totals, seizure_ratio or pos_weight "
                               "are not the ones its windows give")
    return composition


def _drawn(composition: BalancedComposition) -> dict[str, tuple[WindowRef, ...]]:
    return {PARTIAL: composition.partial, FULL: composition.full,
            NO_SEIZURE: composition.background}


def dataset_log_lines(composition: BalancedComposition) -> list[str]:
    """The verification lines of docs/cache-format.md ("Log lines"), exactly."""
    return [
        f"[DATASET] BalancedSeizureDataset: {composition.total} windows from manifest",
        "[DATASET] Using BalancedSeizureDataset known distribution",
        f"[DATASET] Seizure ratio: {composition.seizure_ratio:.1%} (from manifest)",
        f"[DATASET] Using pos_weight: {composition.pos_weight:.2f} (sqrt scaling)",
    ]


@dataclass(frozen=True)
class PreparedSplit:
    """A split whose index is current, and the files that the env flags let a run use."""

    cache_dir: Path
    facts: SplitFacts
    index: DatasetIndex
    files: tuple[str, ...]
    flags: EnvFlags


def prepare_split(cache_dir: Path, flags: EnvFlags | None = None,
                  config: CacheConfig = DEFAULT_CONFIG, log: Log = print) -> PreparedSplit:
    """Validate or rebuild the index (and, under BGB_FORCE_MANIFEST_REBUILD, rescan every NPZ)."""
    flags = flags if flags is not None else EnvFlags.from_env()
    cache_dir = Path(cache_dir)
    facts = collect_facts(cache_dir, config, scan_all=flags.force_manifest_rebuild)
    index = ensure_index(cache_dir, config, facts=facts, log=log)
    files = index.first_files(flags.file_limit())
    if len(files) < len(index.files):
        why = "BGB_LIMIT_FILES" if flags.limit_files is not None else "BGB_SMOKE_TEST=1"
        log(f"[DATASET] Using the first {len(files)} of {len(index.files)} files ({why})")
    return PreparedSplit(cache_dir=cache_dir, facts=facts, index=index, files=files, flags=flags)


def balanced_composition(split: PreparedSplit, balance: BalanceConfig = DEFAULT_BALANCE,
                         config: CacheConfig = DEFAULT_CONFIG, log: Log = print
                         ) -> BalancedComposition:
    """Validate or rebuild the manifest, then compose the balanced set of the split's used files."""
    manifest = ensure_manifest(split.cache_dir, config, force=split.flags.force_manifest_rebuild,
                               facts=split.facts, log=log)
    return compose_balanced(manifest, balance, files=split.files)


def composition_table(composition: BalancedComposition) -> list[str]:
    available = (composition.partial_available, composition.full_available,
                 composition.background_available)
    rows = [(category, count, len(refs))
            for (category, refs), count in zip(_drawn(composition).items(), available)]
    rows.append(("total", sum(r[1] for r in rows), composition.total))
    return [f"  {'category':<16}{'available':>10}{'drawn':>10}"] + [
        f"  {name:<16}{available:>10}{drawn:>10}" for name, available, drawn in rows]
