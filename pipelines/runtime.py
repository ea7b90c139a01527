"""Starting Ray: in-process by default, an existing cluster when an address is given."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

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
    env_vars = {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                "TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2"}
    if address:
        ray.init(address=address, runtime_env={"env_vars": env_vars}, logging_level=logging.WARNING,
                 log_to_driver=False)
        return f"ray cluster at {address}"
    # A local Ray's workers inherit the environment of the raylet that ray.init starts
    # here, so the variables go there rather than into a job runtime_env: workers Ray
    # boots at start-up then match the job and are used (with a runtime_env they are
    # not, and every stage waits for a new worker process to boot).
    with _environ(env_vars):
        # address="local": always a Ray of our own, even while another process's local Ray
        # runs on this machine (without it ray.init joins that one, and refuses num_cpus)
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    return f"local ray ({num_cpus or os.cpu_count()} CPUs, in-process)"


@contextmanager
def _environ(values: dict[str, str]):
    """Set `values` in os.environ for the block, then put back only those keys (not
    mock.patch.dict: ray.init sets variables of its own that must stay)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
