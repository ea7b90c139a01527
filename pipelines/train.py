"""Launch a trainer: in this process, or data-parallel on Ray Train's TorchTrainer.

One launcher for every trainer (motion, video). A trainer is a plain function
`train_loop(config: dict) -> dict` that builds its model and data and calls
`models.training.train()`; it never touches Ray. `launch()` runs it:

- `num_workers == 1` and no Ray address: directly, in this process (no Ray at all);
- otherwise: on `num_workers` Ray Train workers (TorchTrainer), which set up
  torch.distributed first: gloo on CPUs, nccl on GPUs (`use_gpu`). `models.training.train`
  then wraps the model in DDP and only rank 0 writes the run folder.

A trainer's rank 0 writes its summary dict to `run_dir/result.json` (when the trainer
writes none, the launcher's rank 0 writes the dict the loop returned); `launch` returns it
(in-process: the loop's return value). Checkpoints and loss logs live in the shared run folder (`run_dir`, which every worker
must see: on a cluster, put it on shared storage); re-running the same command resumes
from its newest checkpoint whichever way it was launched. Ray Train's own run state
(`run_dir/ray/`) holds only what Ray records about the job.

    from pipelines.train import launch
    from models.motion_train import train_loop
    result = launch(train_loop, {"store": "out/store", "run_dir": "runs/m1", ...},
                    num_workers=2, run_dir="runs/m1")
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"  # a trainer's rank 0 writes its summary here (workers cannot return values)


def _worker(config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker: thread cap, the trainer, then one report per worker."""
    import ray.train
    import torch

    torch.set_num_threads(int(config.get("threads_per_worker", 1)))
    result = config["fn"](config["config"]) or {}
    summary = config.get("result_file")
    if summary and ray.train.get_context().get_world_rank() == 0 and not os.path.exists(summary):
        # a trainer that returns its summary but writes none (the video trainer): rank 0 writes it,
        # else the driver would get only Ray's reported metrics
        with open(summary + ".tmp", "w") as f:
            json.dump(result, f, indent=1, default=str)
        os.replace(summary + ".tmp", summary)
    # every worker reports (Ray Train expects it of all ranks); rank 0's metrics are the result
    ray.train.report({k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))})


def launch(
    train_loop: Callable[[dict[str, Any]], dict[str, Any]],
    loop_config: dict[str, Any],
    num_workers: int = 1,
    use_gpu: bool = False,
    ray_address: str | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    cpus_per_worker: float = 1.0,
    threads_per_worker: int = 1,
) -> dict[str, Any]:
    """Run `train_loop(loop_config)` on one process or `num_workers` Ray Train workers.

    Returns the loop's result dict (rank 0's when distributed). ray_address: an existing
    cluster ("auto", "ray://host:10001", ...); None with num_workers > 1 starts a local Ray
    in this process (and stops it afterwards). The loop config must be picklable.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers={num_workers}: need at least 1 worker")
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if use_gpu:  # checked before the in-process path too: one worker with --gpu on a CPU box trained on the CPU
        import torch

        if not address and torch.cuda.device_count() < num_workers:
            raise ValueError(f"use_gpu with num_workers={num_workers} but this machine has "
                             f"{torch.cuda.device_count()} GPU(s); lower --workers, drop --gpu, or give "
                             "--ray-address of a cluster with GPUs")
    if num_workers == 1 and not address:
        return train_loop(loop_config)
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.runtime import init_ray

    started = not ray.is_initialized()
    need = max(int(round(num_workers * cpus_per_worker + 0.5)), os.cpu_count() or 1)
    where = init_ray(address, num_cpus=None if address else need)  # a local Ray: tried again if it starts late
    log.info("training on %s with %d worker(s), %s", where, num_workers, "nccl" if use_gpu else "gloo")
    storage = Path(run_dir or loop_config.get("run_dir") or "runs").resolve() / "ray"
    storage.mkdir(parents=True, exist_ok=True)
    summary = storage.parent / RESULT_FILE
    summary.unlink(missing_ok=True)  # an earlier run's: the one read below is this run's
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"fn": train_loop, "config": loop_config, "threads_per_worker": threads_per_worker,
                               "result_file": str(summary)},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": cpus_per_worker}),
            run_config=RunConfig(storage_path=str(storage), name="train"),
        )
        result = trainer.fit()
        if result.error:
            raise result.error
        if summary.is_file():
            return json.loads(summary.read_text())
        return dict(result.metrics or {})
    finally:
        if started and not address:
            ray.shutdown()
