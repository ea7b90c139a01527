"""Starting Ray: in-process by default, an existing cluster when an address is given."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> str:
    """Connect to `address` (or $RAY_ADDRESS), else start a local Ray in this process.

    Returns a short description of what it connected to. Safe to call twice.
    """
    import ray

    if ray.is_initialized():
        return "ray (already initialised)"
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Workers must find the project's packages however the driver was started.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"env_vars": {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                        "TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}}
    if address:
        ray.init(address=address, runtime_env=env, logging_level=logging.WARNING, log_to_driver=False)
        return f"ray cluster at {address}"
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, runtime_env=env,
             logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    return f"local ray ({num_cpus or os.cpu_count()} CPUs, in-process)"


def quiet_ray_data() -> None:
    """Ray Data prints per-operator progress bars; mentor shows its own progress."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    # A row here is one clip (a few KB) whose stages take seconds: one row per block,
    # so that the clips of one source spread over all workers instead of riding in the
    # source's block through one worker at a time.
    ctx.target_max_block_size = 1
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
