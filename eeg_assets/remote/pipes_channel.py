"""Dagster Pipes inside a Modal container: results as the return value, logs on a Queue.

``modal run`` and a function call's log stream carry text for people: lines of several containers
interleave, an unfinished line is flushed at a poll's end, colour codes are added, and the last
lines are dropped when the client stops waiting. None of that may touch a result. So a
container's Pipes messages take two documented data channels instead:

* every message is kept and returned by the function (:func:`serve`): the caller gets the whole
  list, materializations and check results included, from ``FunctionCall.get()``;
* while the call runs, each ``log`` message is also put on a partition of a ``modal.Queue``
  (:data:`~eeg_assets.remote.deployment.PIPES_QUEUE`), which the launcher drains into the run's
  log: progress only, dropped without harm when the Queue cannot take it.

Each message carries the attempt it came from (a container restarted after a preemption starts a
new one) and its position, so the launcher shows a streamed line once and takes the results of the
attempt that finished. No Dagster import: the container has only ``dagster-pipes``.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dagster_pipes import (
    PipesContext,
    PipesDefaultContextLoader,
    PipesMappingParamsLoader,
    PipesMessage,
    PipesMessageWriter,
    PipesMessageWriterChannel,
    PipesParams,
)

#: Streamed to the Queue as they happen; everything else waits for the return value.
STREAMED_METHODS = ("log",)


class QueueChannel(PipesMessageWriterChannel):
    def __init__(self, queue: Any, partition: str, attempt: str):
        self.queue, self.partition, self.attempt = queue, partition, attempt
        self.sent: list[dict] = []

    def write_message(self, message: PipesMessage) -> None:
        item = {"attempt": self.attempt, "seq": len(self.sent), "message": message}
        self.sent.append(item)
        if message.get("method") in STREAMED_METHODS and self.queue is not None:
            try:
                self.queue.put(item, partition=self.partition)
            except Exception:  # noqa: BLE001 - progress only; the result is the return value
                pass


class QueueMessageWriter(PipesMessageWriter[QueueChannel]):
    def __init__(self, queue: Any, partition: str):
        self.channel = QueueChannel(queue, partition, uuid.uuid4().hex[:12])

    @contextmanager
    def open(self, params: PipesParams) -> Iterator[QueueChannel]:
        yield self.channel


def serve(call: dict, body: Callable[[PipesContext], None], *, queue: Any,
          code_version: str, app: str) -> dict:
    """Run ``body`` in a Pipes session opened from ``call``; return every message it sent.

    ``call`` is what the launcher spawned the function with: ``pipes_env`` (the Pipes bootstrap
    variables), ``partition`` (of the Queue) and ``code_version`` (the caller's code). Returns
    ``{"messages": [...], "error": None | str, "traceback": None | str}``, or ``{"stale": {...}}`` when the caller's code
    is not the code deployed here.
    """
    if call.get("code_version") != code_version:
        return {"stale": {"app": app, "deployed": code_version,
                          "local": call.get("code_version")}}
    writer = QueueMessageWriter(queue, call["partition"])
    # dagster_pipes keeps one context per process and never forgets it: a warm container serving
    # its second call would otherwise report to the first call's run.
    PipesContext._instance = None
    context = PipesContext(PipesMappingParamsLoader(call["pipes_env"]),
                           PipesDefaultContextLoader(), writer)
    PipesContext.set(context)
    error = trace = None
    try:
        with context:
            body(context)
    except Exception as exc:  # noqa: BLE001 - reported in "closed" and returned, not retried
        error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)
    finally:
        PipesContext._instance = None
    return {"messages": writer.channel.sent, "error": error, "traceback": trace}
