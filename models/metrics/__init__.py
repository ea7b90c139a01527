"""Evaluation metrics: motion (SMPL-X trajectories), image/video quality, sync, identity.

Every metric is a pure function on arrays with its shapes in the docstring; network-based
ones take a local weights path and raise `MissingWeights` (naming the file) when it is absent.
"""
