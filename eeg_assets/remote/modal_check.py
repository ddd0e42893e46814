"""``python -m eeg_assets modal-check``: what a user runs before a first real Modal run.

It checks, in order, and says what to fix: a token is present; both volumes exist as version-2
volumes; each deployed app answers a ``ping`` (one small CPU call, seconds and cents) with this
checkout's code version. Then it prints an estimate of a full TUSZ build and of a training run,
including the start-up overhead of every spawned call. No Dagster here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from eeg_assets.remote.deployment import APP_FILES, StaleDeployment, code_version, deploy_command
from eeg_assets.remote.modal_client import CallFailed, ModalUnavailable
from eeg_assets.settings import Settings

#: Full TUSZ v2.0.3 (docs/DOMAIN facts) and this project's measurements; see the README's Modal
#: section for where each figure comes from.
TUSZ_EDFS, TUSZ_HOURS = 7_364, 1_470.0
CACHE_GB, RAW_GB = 628.0, 85.0
CPU_S_PER_HOUR = 1.3               # build_recording, one core (bench_build.py)
#: Assumed, not measurable here: check them against the first run's metadata.
COLD_START_S = 5.0                 # a container start (image cached)
CONTAINER_IMPORT_S = 2.5           # Python start of a build container
VOLUME_WRITE_GB_S = 1.0            # the volume's aggregate write rate
CONTAINER_WRITE_GB_S = 0.1
UPLOAD_GB_S = 0.1                  # a 1 Gbit/s uplink
GPU_WINDOWS_PER_S = 400.0          # compact U-Net on one A100/H100: measure with gpu_train_smoke.py
CORE_S_USD, GIB_S_USD = 0.0000131, 0.00000222
GPU_S_USD = {"H100": 0.001097, "A100": 0.000583, "A100-80GB": 0.000694, "L4": 0.000222}
#: Spawned calls of one split's chain: four steps and seven checks.
CALLS_PER_SPLIT = 11
SPLITS = 3


@dataclass
class Estimate:
    build_wall_s: float
    build_usd: float
    train_wall_s: float
    train_usd: float | None
    lines: list[str]


def estimate(settings: Settings, train_windows_per_epoch: int = 60_000) -> Estimate:
    """Full-TUSZ build and training, from the stated figures and ``settings``."""
    modal, train = settings.modal, settings.train
    containers = max(1, modal.build_max_containers)
    cpu_s = TUSZ_HOURS * CPU_S_PER_HOUR
    write_s = max(CACHE_GB / VOLUME_WRITE_GB_S, CACHE_GB / containers / CONTAINER_WRITE_GB_S)
    per_container_s = COLD_START_S + CONTAINER_IMPORT_S + cpu_s / containers
    overhead_s = SPLITS * CALLS_PER_SPLIT * COLD_START_S  # every step and check is a call
    build_wall_s = max(write_s, per_container_s) + overhead_s
    core_usd = modal.build_cpu * CORE_S_USD + modal.build_memory_mb / 1024 * GIB_S_USD
    build_usd = containers * max(write_s, per_container_s) * core_usd
    windows = train.max_train_windows_per_epoch or train_windows_per_epoch
    train_wall_s = COLD_START_S + train.epochs * windows / GPU_WINDOWS_PER_S
    gpu_rate = GPU_S_USD.get(modal.gpu.split(":")[0])
    train_usd = train_wall_s * gpu_rate if gpu_rate else None
    lines = [
        f"upload once: {RAW_GB:.0f} GB at {UPLOAD_GB_S * 1000:.0f} MB/s = "
        f"{RAW_GB / UPLOAD_GB_S / 60:.0f} min",
        f"cache build, 3 splits on {containers} containers: {cpu_s / 60:.0f} CPU-min of work, "
        f"{CACHE_GB:.0f} GB written ({write_s / 60:.1f} min at the volume's rate), "
        f"{SPLITS * CALLS_PER_SPLIT} spawned calls x {COLD_START_S:.0f} s start-up = "
        f"{overhead_s / 60:.1f} min: about {build_wall_s / 60:.0f} min, ${build_usd:.2f}",
        f"training: {train.epochs} epochs x {windows:,} windows / {GPU_WINDOWS_PER_S:.0f} "
        f"windows/s (assumed) + {COLD_START_S:.0f} s start-up = {train_wall_s / 3600:.1f} h on "
        f"{modal.gpu}" + (f", ${train_usd:.2f}" if train_usd is not None else
                          " (no list price known for this GPU)"),
    ]
    return Estimate(build_wall_s, build_usd, train_wall_s, train_usd, lines)


def modal_check(settings: Settings, client, out: Callable[[str], None] = print,
                ping_timeout_s: float = 300.0) -> int:
    """Run the checks, print a line each; the number of problems found."""
    problems = 0

    def report(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        problems += not ok
        out(f"[{'ok' if ok else 'FIX'}] {what}" + (f": {fix}" if fix and not ok else ""))

    source = client.token_source()
    report(source is not None, f"Modal token ({source or 'none found'})",
           "run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET")
    if source is None:
        return problems
    modal = settings.modal
    for role, name in (("raw volume", modal.raw_volume), ("results volume", modal.volume)):
        state = client.volume_version(name)
        report(state == "version 2", f"{role} {name}: {state}")
    local = code_version(modal.to_env())
    for app in APP_FILES:
        started = time.monotonic()
        try:
            call_id = client.spawn(app, "ping", {})
            answer = None
            while answer is None and time.monotonic() - started < ping_timeout_s:
                answer = client.result(call_id, timeout_s=5.0)
        except (ModalUnavailable, CallFailed) as exc:
            report(False, f"app {app}", f"{exc}; deploy it with `{deploy_command(app)}`")
            continue
        if answer is None:
            report(False, f"app {app}: no answer in {ping_timeout_s:.0f} s", "see `modal app "
                   f"logs {app}`")
            continue
        seconds = time.monotonic() - started
        deployed = answer.get("code_version")
        report(deployed == local,
               f"app {app}: deployed code {deployed}, this checkout {local} (round trip "
               f"{seconds:.1f} s)", str(StaleDeployment(app, deployed, local)))
    out("estimate (figures and assumptions: README, 'Full TUSZ on Modal'):")
    for line in estimate(settings).lines:
        out(f"  {line}")
    out("ready for a first run" if not problems else f"{problems} thing(s) to fix first")
    return problems
