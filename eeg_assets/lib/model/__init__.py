"""Stage 4, the detector: the network, the training loop, validation and one training run.

Owns checkpoints, ``training_summary.json`` and the hypothesis files. May import ``dataset``,
``cache`` and the bottom modules.
"""
