"""The one place where this machine talks to Modal's servers (the Dagster process and the CLI).

:class:`ModalClient` spawns functions of the deployed apps by name, polls and cancels their calls,
drains the Queue partition a call streams its log lines to, and hands out the raw volume for
uploads. Everything is a documented ``modal`` client call: ``Function.from_name(...).spawn``,
``FunctionCall.from_id(...).get/cancel``, ``Queue.get_many``, ``Volume.from_name(..., version=2)``.
Errors come out as :class:`ModalUnavailable` (token, network, app not deployed: what to do) or
:class:`CallFailed`. The tests replace this class with a stand-in that plays Modal's servers with
local processes (``EEG_ASSETS_MODAL_CLIENT``); no Dagster here.
"""

from __future__ import annotations

import os
from typing import Any

from eeg_assets.remote.deployment import PIPES_QUEUE, deploy_command
from eeg_assets.settings import ModalSettings

TOKEN_HELP = ("run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET in the "
              "environment the Dagster process starts in")


class ModalUnavailable(RuntimeError):
    """Modal could not be reached or asked to do its part; the message says what to do."""


class CallFailed(RuntimeError):
    """A spawned call ended without a result (it raised, was cancelled, or its result expired)."""


def _modal():
    try:
        import modal
    except ImportError:
        raise ModalUnavailable("the `modal` package is not installed: pip install "
                               "'eeg_assets[modal]'") from None
    return modal


def token_source() -> str | None:
    """Where the Modal token comes from ("environment", "~/.modal.toml"), or None."""
    if os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"):
        return "environment (MODAL_TOKEN_ID, MODAL_TOKEN_SECRET)"
    try:
        from modal.config import config, user_config_path
    except ImportError:
        return None
    return user_config_path if config.get("token_id") else None


class ModalClient:
    """Modal's servers, as the Dagster process uses them."""

    def __init__(self, settings: ModalSettings):
        self.settings = settings

    def _translate(self, exc: Exception, what: str, app: str | None = None) -> Exception:
        modal = _modal()
        errors = modal.exception
        if isinstance(exc, errors.AuthError):
            return ModalUnavailable(f"{what}: Modal refused the token ({exc}): {TOKEN_HELP}")
        if isinstance(exc, errors.NotFoundError) and app is not None:
            return ModalUnavailable(f"{what}: the app {app} is not deployed ({exc}): run "
                                    f"`{deploy_command(app)}`")
        if isinstance(exc, (errors.ConnectionError, ConnectionError, OSError)):
            return ModalUnavailable(f"{what}: Modal could not be reached ({exc}); check the "
                                    f"network, then {TOKEN_HELP}")
        return CallFailed(f"{what}: {type(exc).__name__}: {exc}")

    def spawn(self, app: str, function: str, call: dict) -> str:
        """Start ``app.function(call)`` on Modal and return the call's id at once."""
        modal = _modal()
        if token_source() is None:
            raise ModalUnavailable(f"no Modal token: {TOKEN_HELP}")
        try:
            return modal.Function.from_name(app, function).spawn(call).object_id
        except Exception as exc:  # noqa: BLE001 - translated into what to do
            raise self._translate(exc, f"starting {app}.{function}", app) from None

    def result(self, call_id: str, timeout_s: float) -> Any | None:
        """The call's return value, or None when it is still running after ``timeout_s``."""
        modal = _modal()
        try:
            return modal.FunctionCall.from_id(call_id).get(timeout=timeout_s)
        except TimeoutError:  # the builtin: still running (modal's own TimeoutError differs)
            return None
        except modal.exception.OutputExpiredError:
            raise CallFailed(f"the result of Modal call {call_id} has expired") from None
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, f"Modal call {call_id}") from None

    def token_source(self) -> str | None:
        return token_source()

    def cancel(self, call_id: str) -> None:
        _modal().FunctionCall.from_id(call_id).cancel(terminate_containers=True)

    def drain(self, partition: str) -> list[dict]:
        """The log items the call has put on its Queue partition since the last drain."""
        modal = _modal()
        try:
            queue = modal.Queue.from_name(PIPES_QUEUE, create_if_missing=True)
            return queue.get_many(1000, block=False, partition=partition)
        except Exception:  # noqa: BLE001 - progress only: the result does not travel here
            return []

    def raw_volume(self) -> Any:
        """The raw volume for ``sync_raw`` (``batch_upload``, ``read_file``, ``remove_file``)."""
        modal = _modal()
        if token_source() is None:
            raise ModalUnavailable(f"no Modal token: {TOKEN_HELP}")
        return modal.Volume.from_name(self.settings.raw_volume, create_if_missing=True, version=2)

    def volume_version(self, name: str) -> str:
        """"version 2", or what is wrong with the volume ``name``."""
        modal = _modal()
        try:
            modal.Volume.from_name(name, version=2).hydrate()
        except modal.exception.NotFoundError:
            return (f"missing: run `modal volume create --version=2 {name}` (or let the first "
                    "run create it)")
        except modal.exception.InvalidError as exc:
            return (f"not a version-2 volume ({exc}): the fan-out's concurrent writers need "
                    f"one; copy the data to a new volume made with `modal volume create "
                    f"--version=2` and set its name")
        except Exception as exc:  # noqa: BLE001
            return str(self._translate(exc, f"volume {name}"))
        return "version 2"


def load_client(import_path: str, settings: ModalSettings):
    """The client ``import_path`` (``module:attribute``) names, built for ``settings``."""
    import importlib

    module, _, attribute = import_path.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ModalUnavailable(f"EEG_ASSETS_MODAL_CLIENT={import_path!r} cannot be imported "
                               f"({exc})") from None
    return factory(settings)
