"""A team instance on PostgreSQL, end to end (README, "A team deployment on PostgreSQL").

A throwaway PostgreSQL cluster (Debian's ``postgresql`` package, which ``.ci/run`` installs) is
started in a temporary folder on a free port, with password authentication over TCP; the
``dagster.yaml`` is the README's, read from README.md, so the documented file is the one tested.
The cache chains of the eval and val splits run at once, as two ``dagster asset materialize``
commands, then ``dagster-daemon run`` (the one daemon of the instance) ticks the drop sensor
once; the runs, the tick, the sensor's state and its observations are read back from PostgreSQL.

Without PostgreSQL's server programs the test is skipped, saying so.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from eeg_assets_tests.support.dagster_fixtures import (  # noqa: F401 - sample_raw_root: a fixture
    BIN,
    CHAIN,
    EVAL_STEMS,
    dagster_env,
    sample_raw_root,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
README_SECTION = "## A team deployment on PostgreSQL"
#: Where Debian's postgresql-<version> package puts the server programs (not on PATH).
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
SENSOR = "raw_edf_drop_sensor"
DATABASE, USER = "dagster", "eeg_assets"


def readme_dagster_yaml() -> str:
    """The ``dagster.yaml`` of the README's PostgreSQL section (its one ``yaml`` block)."""
    text = README.read_text()
    start = text.index(README_SECTION)
    section = text[start:text.find("\n## ", start + len(README_SECTION))]
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```$", section, flags=re.M | re.S)
    assert len(blocks) == 1, f"{README_SECTION!r} should hold one yaml block, has {len(blocks)}"
    _, body = blocks[0]
    return textwrap.dedent(body)


def server_programs() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "pg_ctl").exists():
        return Path(on_path).resolve().parent
    found = [p.parent for p in DEBIAN_PG_ROOT.glob("*/bin/initdb")
             if (p.parent / "pg_ctl").exists()]
    found.sort(key=lambda folder: [int(n) for n in re.findall(r"\d+", folder.parent.name)])
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    password: str

    def environment(self) -> dict[str, str]:
        """The variables the README's dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_USERNAME": USER, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_DB": DATABASE}

    def query(self, sql: str) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER,
                                password=self.password, dbname=DATABASE)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            conn.close()


@pytest.fixture
def postgres() -> Iterator[Server]:
    """A PostgreSQL server of its own: a new cluster in a temporary folder, on a free port."""
    programs = server_programs()
    if programs is None:
        pytest.skip(f"PostgreSQL not installed: no initdb and pg_ctl on PATH or under "
                    f"{DEBIAN_PG_ROOT}/*/bin (install Debian's postgresql package; .ci/run does)")
    for module in ("dagster_postgres", "psycopg2"):
        pytest.importorskip(module, reason="pip install -e '.[postgres]' (the dev install has it)")
    as_owner: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if owner is None or not shutil.which("runuser"):
            pytest.skip("PostgreSQL refuses to run as root, and there is no `postgres` user (or "
                        "no runuser) to run it as: run the tests as another user")
        as_owner = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: that is private to this user, and the server may run as
    # `postgres` (so in /tmp then); a short path also keeps the Unix socket's name in its limit.
    folder = Path(tempfile.mkdtemp(prefix="eeg_assets_pg_",
                                   dir="/tmp" if owner is not None else None))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log = folder / "data", folder / "server.log"
    password = secrets.token_urlsafe(16)
    (folder / "password").write_text(password + "\n")
    if owner is not None:
        os.chown(folder / "password", owner.pw_uid, owner.pw_gid)

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*as_owner, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=folder)

    def server_log() -> str:
        return log.read_text()[-3000:] if log.exists() else "(no server log)"

    port = _free_port()
    try:
        made = run(str(programs / "initdb"), "-D", str(data), "-U", USER, "--no-sync",
                   "--auth-local=trust", "--auth-host=scram-sha-256",
                   f"--pwfile={folder / 'password'}", "-E", "UTF8")
        # A server this machine cannot run (no shared memory in a container, ...) is no
        # PostgreSQL available: skipped, saying why, like a missing one; Dagster is not at fault.
        if made.returncode != 0:
            pytest.skip(f"PostgreSQL could not be set up here (initdb failed): "
                        f"{(made.stderr or made.stdout).strip()[-500:]}")
        start = run(str(programs / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start", timeout=90)
        if start.returncode != 0:
            pytest.skip(f"PostgreSQL could not be started here (pg_ctl start failed): "
                        f"{(start.stderr or start.stdout).strip()[-300:]} {server_log()[-500:]}")
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=password,
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        conn.close()
        yield Server(port, password)
    finally:
        if (data / "postmaster.pid").exists():
            stop = run(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                       "stop")
            if stop.returncode != 0:
                print(f"pg_ctl stop failed: {stop.stderr}\n{server_log()}")
        shutil.rmtree(folder, ignore_errors=True)


def test_readme_dagster_yaml_names_psycopg2_which_a_bare_address_would_not():
    assert "scheme: postgresql+psycopg2" in readme_dagster_yaml()
    # the README's reason: SQLAlchemy reads a bare postgresql:// address as psycopg 3, which
    # dagster-postgres does not install
    import sqlalchemy

    with pytest.raises(ModuleNotFoundError, match=r"^No module named 'psycopg'$"):
        sqlalchemy.create_engine("postgresql://dagster@localhost:5432/dagster")
    engine = sqlalchemy.create_engine("postgresql+psycopg2://dagster@localhost:5432/dagster")
    assert engine.dialect.driver == "psycopg2"


@pytest.mark.slow
def test_chain_and_a_daemon_sensor_tick_are_recorded_in_postgres(postgres, sample_raw_root,
                                                                  tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(readme_dagster_yaml())
    cache, results = tmp_path / "cache", tmp_path / "results"
    env = dagster_env(home, sample_raw_root, cache, results, **postgres.environment())

    for name, value in postgres.environment().items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:  # creates Dagster's tables
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"

        # two runs at once: the cache chains of eval and val, as typed (each runs in its
        # command's process and writes its events to PostgreSQL)
        chain = ",".join(["raw_edf_recordings", *CHAIN])
        commands = {}
        for split in ("eval", "val"):
            with open(tmp_path / f"{split}.log", "w") as log:
                commands[split] = subprocess.Popen(
                    [str(BIN / "dagster"), "asset", "materialize", "-m", "eeg_assets",
                     "--select", chain, "--partition", split],
                    env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            for command in commands.values():
                command.wait(timeout=300)
        finally:
            for command in commands.values():
                if command.poll() is None:
                    command.kill()
                    command.wait()
        for split, command in commands.items():
            output = (tmp_path / f"{split}.log").read_text()
            assert command.returncode == 0, f"{split}:\n{output[-6000:]}"
        assert sorted(p.name for p in (cache / "eval").glob("*_windows.npz")) == sorted(
            f"{stem}_windows.npz" for stem in EVAL_STEMS)

        # the daemon, in the repository root (workspace.yaml), until it has ticked the sensor
        tick = _one_daemon_tick(instance, env, tmp_path / "daemon.log")

        runs = instance.get_run_records()  # the commands' runs; the tick requested none
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == ["eval", "val"]
        assert {r.dagster_run.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        records = instance.fetch_materializations(dg.AssetKey("balanced_dataset"), limit=5).records
        assert sorted(r.partition_key for r in records) == ["eval", "val"]

        # the first tick: eval and val are what their ledgers record (no run), train was just
        # seen (it waits a tick, as a copy in progress would)
        train = len(list((sample_raw_root / "train").rglob("*.edf")))
        assert tick.status == TickStatus.SKIPPED, tick
        assert tick.skip_reason == f"no settled changes ({train} file(s) still arriving)"
        assert not tick.run_ids
        assert '"splits"' in tick.cursor
        observed = instance.fetch_observations(dg.AssetKey("raw_edf_recordings"),
                                               limit=20).records
        runless = {r.partition_key for r in observed if not r.run_id}  # the tick's
        assert {"eval", "val"} <= runless, [(r.partition_key, r.run_id) for r in observed]

    # ... and all of it is in PostgreSQL's tables, not in files under DAGSTER_HOME
    assert postgres.query("SELECT status FROM runs") == [("SUCCESS",), ("SUCCESS",)]
    ticks = postgres.query("SELECT status, tick_body FROM job_ticks")
    assert [status for status, body in ticks if SENSOR in body] == ["SKIPPED"]
    state = postgres.query("SELECT key FROM kvs WHERE key LIKE 'eeg_assets/raw_edf_drop_sensor/%'")
    assert {key.split("/")[3] for (key,) in state} == {"train", "val", "eval"}
    assert not [p.name for p in home.rglob("*.db")], "SQLite storage appeared in DAGSTER_HOME"


def _one_daemon_tick(instance: dg.DagsterInstance, env: dict[str, str], log_path: Path,
                     timeout: float = 120):
    """Run ``dagster-daemon run`` until the drop sensor's first tick is recorded, stop it, and
    return the tick; the daemon's log must show no error."""
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run"], env=env, cwd=REPO_ROOT,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not (ticks := _sensor_ticks(instance)) or ticks[0].status == TickStatus.STARTED:
            if daemon.poll() is not None:
                pytest.fail(f"dagster-daemon exited ({daemon.returncode}) before ticking "
                            f"{SENSOR}:\n{log_path.read_text()[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no tick of {SENSOR} after {timeout:.0f} s:\n"
                            f"{log_path.read_text()[-6000:]}")
            time.sleep(0.5)
    finally:
        _stop(daemon)
    text = log_path.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-6000:]
    return ticks[0]


def _stop(daemon: subprocess.Popen) -> None:
    """One SIGTERM (the daemon shuts its threads down), then whatever is left of its session."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(daemon.pid, signal.SIGKILL)  # its own session: only what it started
    except ProcessLookupError:
        pass
    daemon.wait()


def _sensor_ticks(instance: dg.DagsterInstance) -> list:
    """The drop sensor's ticks, newest first (none before the daemon stores its state)."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == SENSOR:
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))
    return []
