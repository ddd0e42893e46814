"""The upstream training scripts' environment flags (``BGB_*``), read in one place.

Kept under their names so that the same commands work; docs/cache-format.md, "Environment flags".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SMOKE_TEST_FILES = 3


@dataclass(frozen=True)
class EnvFlags:
    smoke_test: bool = False           # BGB_SMOKE_TEST=1: 3 files, no expensive sampling paths
    limit_files: int | None = None     # BGB_LIMIT_FILES=N: cap the file count
    force_manifest_rebuild: bool = False  # BGB_FORCE_MANIFEST_REBUILD=1

    @classmethod
    def from_env(cls, environ=None) -> EnvFlags:
        env = os.environ if environ is None else environ
        limit = env.get("BGB_LIMIT_FILES", "").strip()
        if limit and (not limit.isdigit() or int(limit) < 1):
            raise ValueError(f"BGB_LIMIT_FILES must be a positive integer, got {limit!r}")
        return cls(
            smoke_test=_truthy(env.get("BGB_SMOKE_TEST")),
            limit_files=int(limit) if limit else None,
            force_manifest_rebuild=_truthy(env.get("BGB_FORCE_MANIFEST_REBUILD")),
        )

    def file_limit(self, explicit: int | None = None) -> int | None:
        """The effective cap: an explicit limit wins, then BGB_LIMIT_FILES, then the smoke test's 3."""
        if explicit is not None:
            return explicit
        if self.limit_files is not None:
            return self.limit_files
        return SMOKE_TEST_FILES if self.smoke_test else None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}
