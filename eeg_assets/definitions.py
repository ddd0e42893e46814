"""The project's Definitions, where ``dg`` looks for them (``[tool.dg.project]`` in pyproject.toml).

``dg dev``, ``dg launch`` and ``dg check defs`` load this module; ``dagster`` commands, ``make ui``
and the tests load the same object through ``eeg_assets.defs``.
"""

from eeg_assets.orchestration import defs

__all__ = ["defs"]
