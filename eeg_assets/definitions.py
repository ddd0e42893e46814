"""``defs``: the Definitions that ``dagster``, ``dg`` and the webserver load.

The environment is read here, once, into :class:`~eeg_assets.settings.Settings`; everything else
is built from that object by :func:`~eeg_assets.orchestration.build_defs`.
"""

from eeg_assets.orchestration import build_defs
from eeg_assets.settings import Settings

defs = build_defs(Settings.from_env())
