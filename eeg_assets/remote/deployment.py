"""What the Dagster side and the deployed Modal apps must agree on, with no ``modal`` import.

The two apps are deployed once (``modal deploy``) and called by name: the Dagster process spawns
their functions (:mod:`eeg_assets.remote.modal_client`), so a GPU job outlives the process that
started it. A deployed app runs the code it was deployed with; every call carries the
:func:`code_version` of the caller's code, and a container whose own version differs refuses the
call before doing any work, naming the ``modal deploy`` command that fixes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
REMOTE = Path(__file__).resolve().parent
TRAIN_APP, CACHE_APP = "eeg-assets-train", "eeg-assets-cache"
APP_FILES = {TRAIN_APP: REMOTE / "modal_app.py", CACHE_APP: REMOTE / "modal_cache.py"}
#: The Queue whose partitions carry a call's Pipes log lines while it runs (one partition per
#: call; Modal expires an idle partition after a day). Results never travel there: they are the
#: function's return value.
PIPES_QUEUE = "eeg-assets-pipes"
#: The Dict holding one lease per split cache on the results volume.
LEASES_DICT = "eeg-assets-leases"
#: The code a container runs: the library, the container entry points and the settings module.
#: The Dagster layer, the sample generator and the CLI do not reach a container.
CONTAINER_CODE = ("__init__.py", "settings.py", "lib", "remote")


def deploy_command(app: str) -> str:
    return f"modal deploy {APP_FILES[app].relative_to(PACKAGE.parent).as_posix()}"


def code_version(settings_env: dict[str, str], root: Path = PACKAGE) -> str:
    """Digest of the container code under ``root`` (``*.py`` only, as
    ``Image.add_local_python_source`` copies it) and the app settings baked into the image."""
    digest = hashlib.sha256(json.dumps(settings_env, sort_keys=True).encode())
    for entry in CONTAINER_CODE:
        path = root / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class StaleDeployment(Exception):
    """The deployed app runs other code than the caller's."""

    def __init__(self, app: str, deployed: str, local: str):
        super().__init__(f"the deployed Modal app {app} runs code version {deployed}, this "
                         f"checkout is {local}: run `{deploy_command(app)}` (with the same "
                         "EEG_ASSETS_MODAL_* settings) and try again")
        self.app, self.deployed, self.local = app, deployed, local
