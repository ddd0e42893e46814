"""Offline inspection of the Modal apps: no network, spies on the real ``modal`` package's image
builder, ``App.function`` and ``from_name`` lookups (nothing reaches Modal's servers)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import socket
from pathlib import Path

import modal
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_fresh = itertools.count()


def load_app_module(monkeypatch, app_file: Path, **settings: str):
    """Import a Modal app file as a new module (its declarations run again) with only
    ``settings`` among the ``EEG_ASSETS_MODAL_*`` variables set."""
    for name in [n for n in os.environ if n.startswith("EEG_ASSETS_MODAL_")]:
        monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(f"{app_file.stem}_under_test_{next(_fresh)}",
                                                  app_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
#: Dependencies the Dagster process needs but the container must not: it only speaks Pipes.
HOST_ONLY = {"dagster", "dagster-webserver"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during an offline test: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


class Recorder:
    """Records calls of the image builder and ``App.function`` while the module is imported."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.functions: dict[str, dict] = {}
        for name in ("pip_install", "add_local_python_source"):
            self._spy_method(monkeypatch, modal.Image, name)
        original_slim = modal.Image.debian_slim

        def debian_slim(*args, **kwargs):
            self.calls.append(("debian_slim", args, kwargs))
            return original_slim(*args, **kwargs)

        monkeypatch.setattr(modal.Image, "debian_slim", staticmethod(debian_slim))
        original_function = modal.App.function

        def function(app, *args, **kwargs):
            decorator = original_function(app, *args, **kwargs)

            def record(f):
                self.functions[f.__name__] = kwargs
                return decorator(f)

            return record

        monkeypatch.setattr(modal.App, "function", function)

    def _spy_method(self, monkeypatch, cls, name):
        original = getattr(cls, name)

        def spy(obj, *args, **kwargs):
            self.calls.append((name, args, kwargs))
            return original(obj, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)

    def args_of(self, name: str) -> list[tuple]:
        return [args for call, args, _kwargs in self.calls if call == name]


def project_dependencies() -> list[str]:
    """``[project] dependencies`` of pyproject.toml (no tomllib: Python 3.10 is supported)."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    dependencies = re.findall(r'^\s*"([^"]+)"', block, re.M)
    assert "dagster-pipes==1.13.27" in dependencies  # the parse found the list
    return dependencies


def spy_from_name(monkeypatch, *classes) -> list[tuple[str, str, dict]]:
    """``(class name, object name, keyword arguments)`` of every ``from_name`` lookup of
    ``classes`` (modal.Volume, modal.Queue, modal.Dict) while the test runs."""
    looked_up = []
    for cls in classes:
        original = cls.from_name

        def spy(name, *args, _original=original, _cls=cls.__name__, **kwargs):
            looked_up.append((_cls, name, kwargs))
            return _original(name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_name", staticmethod(spy))
    return looked_up
