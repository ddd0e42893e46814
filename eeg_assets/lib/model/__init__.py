"""Stage 4, the detector: the network, the training loop, validation, one training run, and one
evaluation of a trained model on a split (hypotheses, the operating threshold, the scores).

Owns checkpoints, ``training_summary.json``, the hypothesis files and ``evaluation/<split>/``.
May import ``dataset``, ``cache``, ``scoring`` and the bottom modules.
"""
