"""Models that consume a store: motion diffusion (motion*.py), video diffusion (video*.py),
the SMPL-X control renderer (render.py, controls.py), shared training utilities
(training.py) and metrics (metrics/)."""
