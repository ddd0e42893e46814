"""Inputs pinned by content: the files a training run was given, checked against the cache.

A run launched by Dagster is handed the ``balanced_dataset.json`` of the train split and the
``_dataset_index.json`` of the val split that the upstream assets wrote, each with its content
version (the data version Dagster recorded for it). The run reads exactly those files and refuses
to start, naming the file and the reason, when one is missing, corrupt, changed since it was
pinned, or no longer describes the cache (an NPZ rebuilt or removed behind it). It never
recomposes or rewrites them: that is the upstream assets' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.dataset.balanced import BALANCED_NAME, BalancedComposition, read_balanced
from eeg_assets.lib.dataset.index import (
    INDEX_NAME,
    DatasetError,
    DatasetIndex,
    index_staleness,
    read_index,
)
from eeg_assets.lib.dataset.manifest import MANIFEST_NAME, manifest_staleness
from eeg_assets.lib.files import content_version


class StaleInputError(DatasetError):
    """A pinned input is missing, corrupt, changed, or stale against the cache it describes."""


@dataclass(frozen=True)
class PinnedFile:
    """A file a run must read, and the content version it must have."""

    path: Path
    version: str

    @classmethod
    def of(cls, path: Path) -> PinnedFile:
        """Pin a file as it is now."""
        return cls(Path(path), content_version(path))

    def to_dict(self) -> dict:
        return {"path": str(self.path), "version": self.version}

    @classmethod
    def from_dict(cls, data: dict) -> PinnedFile:
        return cls(Path(data["path"]), data["version"])


def _require_version(pinned: PinnedFile, what: str) -> None:
    try:
        found = content_version(pinned.path)
    except FileNotFoundError:
        raise StaleInputError(f"{what} {pinned.path} is missing") from None
    except OSError as exc:
        raise StaleInputError(f"{what} {pinned.path} is unreadable: {exc}") from None
    if found != pinned.version:
        raise StaleInputError(
            f"{what} {pinned.path} is stale: it changed after it was pinned (content version "
            f"{found}, the run was given {pinned.version}); materialize it again")


def pinned_balanced(pinned: PinnedFile, config: CacheConfig = DEFAULT_CONFIG
                    ) -> BalancedComposition:
    """The balanced set exactly as pinned, if it still describes its split's cache.

    Its file must have the pinned version, parse, name the ``manifest.json`` it was composed from
    by a version the manifest still has, and that manifest must be current against the split's
    recorded facts.
    """
    what = "balanced set"
    if pinned.path.name != BALANCED_NAME:
        raise StaleInputError(f"{what} {pinned.path} is not a {BALANCED_NAME}")
    _require_version(pinned, what)
    cache_dir = pinned.path.parent
    try:
        composition = read_balanced(cache_dir)
    except DatasetError as exc:
        raise StaleInputError(f"{what} {pinned.path} is corrupt: {exc}") from None
    manifest_path = cache_dir / MANIFEST_NAME
    try:
        manifest_version = content_version(manifest_path)
    except FileNotFoundError:
        raise StaleInputError(f"{what} {pinned.path} is stale: {manifest_path} is missing"
                              ) from None
    if composition.manifest_version != manifest_version:
        raise StaleInputError(
            f"{what} {pinned.path} is stale: it was composed from manifest version "
            f"{composition.manifest_version}, {manifest_path} is now {manifest_version}")
    reason = manifest_staleness(cache_dir, config)
    if reason:
        raise StaleInputError(f"{what} {pinned.path} is stale: its manifest no longer "
                              f"describes the cache: {reason}")
    return composition


def current_index(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG) -> DatasetIndex:
    """The stored index of a split, refused (never rewritten) when it does not match the cache."""
    path = Path(cache_dir) / INDEX_NAME
    reason = index_staleness(cache_dir, config)
    if reason:
        raise StaleInputError(f"index {path} is stale: {reason}")
    return read_index(cache_dir)


def pinned_index(pinned: PinnedFile, config: CacheConfig = DEFAULT_CONFIG) -> DatasetIndex:
    """The index exactly as pinned, if it still matches its split's NPZs."""
    if pinned.path.name != INDEX_NAME:
        raise StaleInputError(f"index {pinned.path} is not a {INDEX_NAME}")
    _require_version(pinned, "index")
    return current_index(pinned.path.parent, config)
