"""A lease on a split's cache held in a shared key-value store, for builders on other machines.

Locally a split is guarded by an ``flock`` on its cache folder. Containers on a network volume
cannot share such a lock, so a run takes a lease instead: an entry in a store every container
sees (``modal.Dict`` on Modal), created only if absent. Two runs of one split never interleave:
the second waits, then fails naming the run that holds the split. A lease names its holder (the
Dagster run) and expires, so a coordinator killed without releasing it blocks the split only
until then; the same holder takes its own lease back (a container restarted on the same input).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class LeaseStore(Protocol):
    """What ``modal.Dict`` offers: ``put(..., skip_if_exists=True)`` is atomic."""

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...

    def get(self, key: Any, default: Any = None) -> Any: ...

    def pop(self, key: Any, default: Any = None) -> Any: ...


class LeaseHeld(Exception):
    """Another run holds the lease; the message names it."""


@contextmanager
def split_lease(store: LeaseStore, key: str, holder: str, *, ttl_s: float, wait_s: float,
                log: Callable[[str], None] = print, poll_s: float = 5.0,
                clock: Callable[[], float] = time.time) -> Iterator[None]:
    """Hold ``key`` in ``store`` for ``holder`` while the block runs.

    Raises
    ------
    LeaseHeld
        Another holder kept the lease for ``wait_s`` seconds.
    """
    deadline = clock() + wait_s
    announced = False
    while True:
        now = clock()
        lease = {"holder": holder, "since": now, "expires": now + ttl_s}
        if store.put(key, lease, skip_if_exists=True):
            break
        current = store.get(key) or {}
        if current.get("holder") == holder:  # ours: a restart of the same call
            store.put(key, lease)
            break
        if current.get("expires", 0) < now:
            log(f"taking over the expired lease on {key} of {current.get('holder')}")
            store.pop(key)
            continue
        if now >= deadline:
            raise LeaseHeld(
                f"{key} is in use by Dagster run {current.get('holder')} (since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(current.get('since', 0)))}"
                f"; the lease expires {time.strftime('%H:%M:%S UTC', time.gmtime(current['expires']))}"
                "): two runs of one split must not interleave; run again when it is done")
        if not announced:
            log(f"waiting for {key}, held by Dagster run {current.get('holder')}")
            announced = True
        time.sleep(min(poll_s, max(0.0, deadline - now)))
    try:
        yield
    finally:
        if (store.get(key) or {}).get("holder") == holder:
            store.pop(key)
