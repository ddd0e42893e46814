"""Running a function of a deployed Modal app as the external process of a Pipes session.

The call is spawned (it outlives this process), its id recorded in the instance and in the run's
tags, and then awaited: log lines are drained from the call's Queue partition into the run's log
while it runs, and the results (materializations, check results, custom messages) come from its
return value (:mod:`eeg_assets.remote.pipes_channel`), so nothing depends on a log stream.

* **Re-attach.** A step retried or restarted with the same request finds the call recorded under
  the request's digest and waits for it instead of starting a second paid job.
* **Cancel.** Terminating the run (or Ctrl-C) cancels the call on Modal.
* **Stale code.** A deployed app whose code differs from this checkout refuses the call; the step
  fails with the ``modal deploy`` command that fixes it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from contextlib import contextmanager

import dagster as dg

from eeg_assets.remote.deployment import StaleDeployment
from eeg_assets.remote.modal_client import CallFailed, ModalUnavailable

#: Instance key-value store prefix: ``<prefix>/<request digest>`` -> the call working on it.
CALL_KEY_PREFIX = "eeg_assets/modal_call"
CALL_TAG = "eeg_assets/modal_call"
#: How long to go on asking for a result while Modal cannot be reached (the call runs on).
RECONNECT_S = 600.0


class QueueMessageReader(dg.PipesMessageReader):
    """Hands Dagster the messages a Modal call streams (log lines) and returns (everything)."""

    def __init__(self, partition: str):
        self.partition = partition
        self.handler = None
        self.seen: set[tuple[str, int]] = set()
        self.attempts: list[str] = []

    @contextmanager
    def read_messages(self, handler):
        self.handler = handler
        yield {"queue_partition": self.partition}

    def handle(self, item: dict, log) -> None:
        key = (item["attempt"], item["seq"])
        if key in self.seen:
            return
        self.seen.add(key)
        if item["attempt"] not in self.attempts:
            self.attempts.append(item["attempt"])
            if len(self.attempts) > 1:
                log.warning(f"the Modal container was restarted (attempt {len(self.attempts)}): "
                            "preempted or lost; the call goes on from its last checkpoint")
        self.handler.handle_message(item["message"])

    def no_messages_debug_text(self) -> str:
        return ("Expected the Modal call's return value to carry its Pipes messages (see "
                "eeg_assets/remote/pipes_channel.py).")


def _digest(app: str, function: str, extras: dict) -> str:
    payload = json.dumps([app, function, extras], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:24]


class _CallRecord:
    """The call working on one request, in the instance's key-value store."""

    def __init__(self, instance: dg.DagsterInstance, digest: str):
        self.storage, self.key = instance.run_storage, f"{CALL_KEY_PREFIX}/{digest}"

    def get(self) -> dict | None:
        raw = self.storage.get_cursor_values({self.key}).get(self.key)
        return json.loads(raw) if raw else None

    def set(self, value: dict) -> None:
        self.storage.set_cursor_values({self.key: json.dumps(value)})

    def clear(self) -> None:
        self.storage.set_cursor_values({self.key: ""})


def run_on_modal(context: dg.OpExecutionContext, client, *, app: str, function: str,
                 extras: dict, code_version: str, flags: dict[str, str] | None = None,
                 poll_s: float = 5.0) -> dg.PipesClientCompletedInvocation:
    """Run ``app.function`` with ``extras`` as the Pipes extras; the completed invocation.

    Raises ``dg.Failure`` naming what to do when Modal cannot be reached, the app is not deployed
    or runs other code, or the call fails.
    """
    digest = _digest(app, function, extras)
    record = _CallRecord(context.instance, digest)
    previous = record.get()
    partition = previous["partition"] if previous else f"{digest[:16]}-{uuid.uuid4().hex[:12]}"
    reader = QueueMessageReader(partition)
    with dg.open_pipes_session(context=context, extras=extras, message_reader=reader,
                               context_injector=dg.PipesEnvContextInjector()) as session:
        call_id = previous["call_id"] if previous else None
        try:
            if call_id:
                context.log.info(f"re-attaching to Modal call {call_id} ({app}.{function}, "
                                 f"started by run {previous['run_id']}): no second job")
            else:
                call_id = client.spawn(app, function, {
                    "pipes_env": session.get_bootstrap_env_vars(), "partition": partition,
                    "code_version": code_version, "flags": flags or {}})
                record.set({"call_id": call_id, "partition": partition,
                            "run_id": context.run.run_id, "started": time.time()})
                context.log.info(f"spawned Modal call {call_id} ({app}.{function}); a retried "
                                 "step re-attaches to it")
            context.instance.add_run_tags(context.run.run_id, {CALL_TAG: call_id})
            result = _await(context, client, call_id, reader, poll_s)
        except ModalUnavailable as exc:
            raise dg.Failure(str(exc)) from None
        except CallFailed as exc:
            record.clear()
            raise dg.Failure(f"{app}.{function} failed on Modal: {exc}") from None
        except BaseException:  # run terminated, Ctrl-C: nobody will read the result
            if call_id:
                context.log.warning(f"cancelling Modal call {call_id}")
                try:
                    client.cancel(call_id)
                finally:
                    record.clear()
            raise
        record.clear()
        if "stale" in result:
            stale = result["stale"]
            raise dg.Failure(str(StaleDeployment(stale["app"], stale["deployed"],
                                                 stale["local"])))
        for item in result["messages"]:
            reader.handle(item, context.log)
        if result.get("error"):
            context.log.debug(f"{app}.{function} on Modal: {result.get('traceback')}")
            raise dg.Failure(f"{app}.{function} raised on Modal: {result['error']}")
    return dg.PipesClientCompletedInvocation(session)


def _await(context, client, call_id: str, reader: QueueMessageReader, poll_s: float) -> dict:
    unreachable_since = None
    while True:
        try:
            for item in client.drain(reader.partition):
                if item.get("message", {}).get("method") == "log":
                    reader.handle(item, context.log)
            result = client.result(call_id, timeout_s=poll_s)
            unreachable_since = None
        except ModalUnavailable as exc:
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > RECONNECT_S:
                raise ModalUnavailable(f"{exc}; the call {call_id} may still be running: "
                                       "materialize again to re-attach to it") from None
            context.log.warning(f"Modal unreachable, retrying ({exc})")
            time.sleep(poll_s)
            continue
        if result is not None:
            return result
