"""Peak memory of processes from ``/proc``, shared by the benchmark scripts.

Imported as a sibling module: a script run as ``python benchmarks/<name>.py`` has this folder
first on ``sys.path``.
"""

from __future__ import annotations


def vm_hwm_kb(pid: int | str = "self") -> int:
    """Peak RSS of a process since its exec (``VmHWM``, kB); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(parent: int) -> list[int]:
    """The direct children of ``parent``; [] if it is gone."""
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as fh:
            return [int(pid) for pid in fh.read().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Direct and indirect children of ``pid``."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found
