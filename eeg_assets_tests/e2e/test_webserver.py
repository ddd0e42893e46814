"""Smoke test of the UI's server: ``dagster-webserver -m eeg_assets`` on a loopback port answers
GraphQL with the asset graph, its checks and the sensors, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from eeg_assets_tests.support.dagster_fixtures import BIN, CHAIN, CHECKS, dagster_env, make_dagster_home
from eeg_assets_tests.support.webserver import HOST, free_port, wait_until_up

def _children(pid: int) -> list[int]:
    """Direct and indirect children of ``pid`` (from /proc), to check nothing is left behind."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            kids = []
        found += kids
        frontier += kids
    return found


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            if len(address) == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:  # IPv6: four little-endian 32-bit words
                words = bytes.fromhex(address)
                raw = b"".join(words[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_webserver_serves_the_asset_graph_checks_and_sensors(tmp_path):
    home = make_dagster_home(tmp_path / "dagster_home")
    env = dagster_env(home, tmp_path / "raw", tmp_path / "cache", tmp_path / "results")
    port = free_port()
    url = f"http://{HOST}:{port}/graphql"
    log_path = tmp_path / "webserver.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-m", "eeg_assets", "-h", HOST, "-p", str(port)],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[int] = []
    try:
        answer = wait_until_up(process, url, log_path)
        children = _children(process.pid)
        assert "errors" not in answer, answer["errors"]
        nodes = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}
        assert {*CHAIN, "trained_model", "raw_edf_recordings"} <= set(nodes)
        for name in CHAIN:
            assert nodes[name]["groupName"] == "tusz_cache" and nodes[name]["isPartitioned"]
        assert nodes["trained_model"]["isPartitioned"]  # by experiment
        for name, expected in CHECKS.items():
            checks = nodes[name]["assetChecksOrError"]
            assert checks["__typename"] == "AssetChecks", checks
            assert {c["name"] for c in checks["checks"]} == expected, name
        blocking = {c["name"]: c["blocking"] for n in nodes.values()
                    if n["assetChecksOrError"]["__typename"] == "AssetChecks"
                    for c in n["assetChecksOrError"]["checks"]}
        assert blocking["patient_disjointness"] and blocking["manifest_current"]
        assert blocking["seizure_windows_present"]
        assert {"checkpoint_reproduces_metrics", "metrics_finite"} <= set(blocking)

        repos = answer["data"]["repositoriesOrError"]
        assert repos["__typename"] == "RepositoryConnection", repos
        (repo,) = repos["nodes"]
        assert repo["location"]["name"] == "eeg_assets"
        assert "split_cache_job" in {j["name"] for j in repo["jobs"]}
        sensors = {s["name"]: s for s in repo["sensors"]}
        assert set(sensors) >= {"raw_edf_drop_sensor", "cache_automation_sensor"}
        for sensor in sensors.values():
            assert sensor["defaultStatus"] == "RUNNING", sensor
            assert sensor["sensorState"]["status"] == "RUNNING", sensor
        assert sensors["cache_automation_sensor"]["sensorType"] == "AUTO_MATERIALIZE"
        assert sensors["raw_edf_drop_sensor"]["sensorType"] == "STANDARD"

        # bound to loopback only: the listening socket's address is 127.0.0.1, not a wildcard
        assert _listening_addresses(port) == {"127.0.0.1"}
        assert f"Serving dagster-webserver on http://{HOST}:{port}" in log_path.read_text()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own session: only what we started
            process.wait()
            pytest.fail(f"dagster-webserver did not stop within 60 s of SIGTERM:\n"
                        f"{log_path.read_text()[-4000:]}")
    log_text = log_path.read_text()
    assert code in (0, -signal.SIGTERM), log_text[-4000:]
    assert "Traceback" not in log_text, log_text[-6000:]
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [pid for pid in children if _alive(pid)]
    if left:
        os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"processes left running after the webserver stopped: {left}"
