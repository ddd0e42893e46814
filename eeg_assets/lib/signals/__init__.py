"""Stage 1, one recording's signal: EDF reading, channel mapping, resampling and filtering.

Owns everything from EDF bytes to conditioned float32 channels in the pinned order. May import
``eeg_assets.lib.config`` only.
"""
