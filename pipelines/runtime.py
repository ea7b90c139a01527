"""Starting Ray: in-process by default, an existing cluster when an address is given.

A new Ray node (the in-process one `ray.init` starts, or a node `ray.cluster_utils` adds)
has a fixed 30 s for its raylet to register with the GCS (ray/_private/node.py in Ray
2.60: a constant, no setting or environment variable; Ray's issue #47087 raised it from
10 s), which an overloaded machine can miss (it did on the shared 2-core box: README, "mentor
run"). A joined cluster (`--ray-address`) starts no node and is not retried. `start_node`
tries again (`MENTOR_RAY_START_TRIES`, default 3) after ending, by pid, the processes the
failed try left behind, says so on the log, and ends with one message naming the load and
the way out.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
START_TRIES = 3
# What Ray raises when a node's processes did not come up in its fixed times. Ray raises a
# bare Exception with these words (ray/_private/node.py and services.py), so the message
# is all there is to tell a start-up timeout from a real error, which must not be retried.
START_FAILURES = ("timed out during startup", "timed out after", "failed to start", "failed to get the node info",
                  "gcs cannot find the node")
# A Ray node's own programs; its Python ones (reaper, agents, log monitor, workers) run
# files from Ray's package folder (.../site-packages/ray/...) or are named ray::...
RAY_PROGRAMS = ("gcs_server", "raylet")


class RayStartError(RuntimeError):
    """Ray's node did not start in every try (a loaded machine)."""


def is_start_failure(e: BaseException) -> bool:
    """True for Ray's "the node did not come up in time" errors (worth another try)."""
    text = str(e).lower()
    return any(s in text for s in START_FAILURES)


def start_node(start: Callable[[], T], what: str, tries: int | None = None, pause_s: float = 2.0) -> T:
    """`start()` (a ray.init or a cluster's add_node), tried up to `tries` times while it
    fails as a node start does on a loaded machine; the Ray processes a failed try started
    (this process's new children) are ended by pid first. Any other error is raised at once."""
    tries = tries or int(os.environ.get("MENTOR_RAY_START_TRIES") or START_TRIES)
    if tries < 1:
        raise ValueError(f"MENTOR_RAY_START_TRIES={tries}: need at least 1")
    for attempt in range(1, tries + 1):
        before = _children()
        try:
            return start()
        except Exception as e:
            if not is_start_failure(e):
                raise
            ended = _end_new_ray_children(before)
            load = _load()
            if attempt == tries:
                raise RayStartError(
                    f"{what}: Ray's node did not start in {tries} tries (last: {str(e).splitlines()[0]}) at a load "
                    f"average of {load}; Ray gives a new node a fixed 30 s to register. Run the command again when "
                    "the machine is less busy (it resumes where it stopped), raise MENTOR_RAY_START_TRIES, or start "
                    "Ray once yourself (`ray start --head`) and pass --ray-address auto") from e
            log.warning("%s: Ray's node did not start (try %d of %d, load average %s: %s); ended %d process(es) it "
                        "left, trying again", what, attempt, tries, load, str(e).splitlines()[0], len(ended))
            time.sleep(pause_s)
    raise AssertionError("unreachable")


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def _psutil():
    """psutil: Ray's own copy (ray/thirdparty_files, on the path once ray is imported); None without."""
    try:
        import ray  # noqa: F401

        import psutil
    except ImportError:
        return None
    return psutil


def _children() -> set[int]:
    psutil = _psutil()
    return {c.pid for c in psutil.Process().children(recursive=True)} if psutil else set()


def _end_new_ray_children(before: set[int], wait_s: float = 5.0) -> list[int]:
    """End (SIGTERM, then SIGKILL) the Ray processes among this process's children that
    were not there before: the GCS, raylet and agents of a node start that failed."""
    psutil = _psutil()
    if psutil is None:
        return []
    procs = []
    for c in psutil.Process().children(recursive=True):
        if c.pid in before:
            continue
        try:
            argv = c.cmdline() or [""]
        except psutil.Error:
            continue
        if (os.path.basename(argv[0]) in RAY_PROGRAMS or argv[0].startswith("ray::")
                or f"{os.sep}ray{os.sep}" in " ".join(argv[:3])):
            procs.append(c)
    for c in procs:
        try:
            c.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=wait_s)
    for c in alive:
        try:
            c.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=wait_s)
    return [c.pid for c in procs]


def add_cluster_node(cluster, **node_args):
    """`cluster.add_node(**node_args)` on a `ray.cluster_utils.Cluster`, then wait for it,
    with start_node's tries (a loaded machine misses Ray's 30 s registration)."""

    def start():
        node = cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        return node

    return start_node(start, "adding a Ray node")


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
    if os.environ.get("MENTOR_STORAGE_OPTIONS"):  # a store on object storage: workers open it from its URL
        env_vars["MENTOR_STORAGE_OPTIONS"] = os.environ["MENTOR_STORAGE_OPTIONS"]
    if address:  # joining starts no node: nothing to retry
        ray.init(address=address, runtime_env={"env_vars": env_vars}, logging_level=logging.WARNING,
                 log_to_driver=False)
        return f"ray cluster at {address}"
    # A local Ray's workers inherit the environment of the raylet that ray.init starts
    # here, so the variables go there rather than into a job runtime_env: workers Ray
    # boots at start-up then match the job and are used (with a runtime_env they are
    # not, and every stage waits for a new worker process to boot).
    def start() -> None:
        try:
            with _environ(env_vars):
                # address="local": always a Ray of our own, even while another process's local Ray
                # runs on this machine (without it ray.init joins that one, and refuses num_cpus)
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
        except Exception:
            ray.shutdown()  # whatever the failed start set up in this process
            raise

    start_node(start, "starting a local Ray")
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
