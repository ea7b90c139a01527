"""Training utilities shared by the motion and video trainers.

One loop, `train()`, runs a model's own `loss_fn(model, batch) -> (loss, scalars)` over
batches from `batches(epoch)`, and brings what every trainer needs:

- **checkpoints** (`Checkpointer`): model, optimizer, LR scheduler, AMP grad scaler, step,
  epoch, batch position inside the epoch, RNG states (python, numpy, torch, CUDA) and a
  free `extra` dict, written atomically (temporary name, then `os.replace`) to
  `RUN/checkpoints/step-00000100.pt`; the last `keep` are kept. `train()` resumes from the
  newest one by itself, so a killed run re-run with the same command ends at the same step.
- **loss logs** (`LossLog`): `RUN/loss.csv` (step, wall time, every scalar) and TensorBoard
  events in `RUN/tb/`; rows past the resumed step are dropped, so a resumed curve has no
  duplicates.
- **mixed precision** on CUDA (`amp_setup`): bf16 autocast where the GPU has it, else fp16
  with a GradScaler; plain fp32 on the CPU. Same code on both.
- **progress** (`TrainProgress`): one line with step/total, loss, steps/s, samples/s, ETA
  and the share of time spent waiting for data (rich on a terminal, a log line otherwise).
- **data-wait timing** (`timed`): how long each step blocked on the loader.
- **distributed data parallel**: when `torch.distributed` is initialised (Ray Train's
  TorchTrainer does it, see pipelines/train.py), the model is wrapped in DDP, losses are
  averaged over ranks for the log, and only rank 0 writes checkpoints and logs.

Layout of a run folder:

    RUN/config.json            what the trainer was asked (written by the trainer)
    RUN/checkpoints/step-*.pt  training state, newest last
    RUN/loss.csv, RUN/tb/      loss curves
    RUN/model/                 the final model (save_pretrained), written by the trainer

This module knows nothing of Ray: pipelines/train.py starts the workers.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CKPT_PREFIX = "step-"


# ------------------------------------------------------------------------- devices

def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local_rank> when CUDA is there, else cpu; anything else as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # a launcher may show each worker only its own GPU: wrap the local rank into what is visible
        return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Amp:
    """What `amp_setup` chose: autocast dtype (None = off) and a GradScaler for fp16."""

    device_type: str
    dtype: torch.dtype | None
    scaler: Any = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def amp_setup(device: torch.device, enabled: bool = True) -> Amp:
    """bf16 autocast on a CUDA GPU that has it, else fp16 with a GradScaler; off on the CPU."""
    if not enabled or device.type != "cuda":
        return Amp(device.type, None)
    if torch.cuda.is_bf16_supported():
        return Amp("cuda", torch.bfloat16)
    return Amp("cuda", torch.float16, torch.amp.GradScaler("cuda"))


# ---------------------------------------------------------------------- distributed

@dataclass
class Dist:
    """This process's place in a data-parallel job (world_size 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> Dist:
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        return Dist(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Dist()


def mean_over_ranks(values: dict[str, float], dist: Dist, device: torch.device) -> dict[str, float]:
    """Average scalars over ranks (all_reduce); unchanged when not distributed."""
    if dist.world_size == 1 or not values:
        return values
    import torch.distributed as td

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=device if td.get_backend() == "nccl" else "cpu")
    td.all_reduce(t)
    return {k: float(v) / dist.world_size for k, v in zip(keys, t.tolist())}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(
        model, torch.nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    """Wait for every rank (nothing when not distributed)."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        td.barrier()


# ----------------------------------------------------------------------- run set-up

@dataclass
class RunStart:
    """A trainer's set-up, the same on every rank: its place in the job, its device and its
    run folder. `prepare` writes the folder's settings before training, `finish` the model
    and RUN/result.json after it (rank 0 writes, every rank waits)."""

    dist: Dist
    device: torch.device
    dir: Path

    def prepare(self, files: dict[str, str], make: dict[str, Callable[[Path], None]] | None = None) -> None:
        """Rank 0: the run folder, `files` (name -> text: the model's and the trainer's
        settings) written, and each file of `make` (name -> function writing that path) made
        when it does not exist yet (statistics a resumed run must reuse). Every rank waits."""
        if self.dist.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (self.dir / name).write_text(text)
            for name, write in (make or {}).items():
                if not (self.dir / name).exists():
                    write(self.dir / name)
        barrier()

    def finish(self, result: TrainResult, save: Callable[[Path], None], subdir: str = "model") -> dict[str, Any]:
        """The run's summary (the TrainResult's figures, the model folder, the world size);
        rank 0 saves the model with `save(folder)` into RUN/<subdir> (atomically: a
        temporary folder, then os.replace) and writes the summary to RUN/result.json."""
        import json

        summary = {"step": result.step, "resumed_from": result.resumed_from, "last_loss": result.last_loss,
                   "steps_per_s": result.steps_per_s, "samples_per_s": result.samples_per_s,
                   "data_wait": result.data_wait, "seconds": result.seconds, "model_dir": str(self.dir / subdir),
                   "world_size": self.dist.world_size}
        if self.dist.main:
            save_atomic(self.dir / subdir, save)
            (self.dir / "result.json").write_text(json.dumps(summary, indent=1))
        barrier()
        return summary


def start_run(run_dir: str | os.PathLike[str], device: str | torch.device = "auto",
              seed: int | None = None) -> RunStart:
    """The set-up every train_loop begins with: this rank, its device ("auto": its GPU, else
    the CPU), the run folder (not created yet: `RunStart.prepare` does it on rank 0) and,
    with `seed`, torch's generator seeded for the model's initial weights."""
    dist = dist_info()
    start = RunStart(dist, resolve_device(device, dist.local_rank), Path(run_dir))
    if seed is not None:
        torch.manual_seed(seed)
    return start


def save_atomic(out: Path, write: Callable[[Path], None]) -> Path:
    """`write(folder)` into a temporary folder beside `out`, then that folder renamed to `out`
    (an older `out` replaced): a killed save leaves the previous model whole."""
    import shutil

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------- checkpoints

def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # numpy's key as a tensor, so a checkpoint loads with torch.load(weights_only=True)
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # fewer GPUs than when saved
            torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Resumed:
    """Where a restored run stands."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


class Checkpointer:
    """Atomic training checkpoints in `run_dir/checkpoints`, the newest `keep` kept."""

    def __init__(self, run_dir: str | os.PathLike[str], keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep={keep}: keep at least 1 checkpoint")
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    def paths(self) -> list[Path]:
        """Finished checkpoints, oldest first (temporary files of a killed save are ignored)."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.glob(f"{CKPT_PREFIX}*.pt"):
            try:
                found.append((int(p.stem[len(CKPT_PREFIX):]), p))
            except ValueError:
                continue
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        paths = self.paths()
        return paths[-1] if paths else None

    def save(self, step: int, model: torch.nn.Module, optimizer=None, lr_scheduler=None, scaler=None,
             epoch: int = 0, batch_in_epoch: int = 0, extra: dict[str, Any] | None = None) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": _rng_state(), "extra": extra or {}, "time": time.time(),
        }
        path = self.dir / f"{CKPT_PREFIX}{step:08d}.pt"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for old in self.paths()[:-self.keep]:
            old.unlink(missing_ok=True)
        for stale in self.dir.glob(f".{CKPT_PREFIX}*.tmp"):  # left by a killed save
            if not stale.name.endswith(f".{os.getpid()}.tmp"):
                stale.unlink(missing_ok=True)
        return path

    def restore(self, model: torch.nn.Module, optimizer=None, lr_scheduler=None, scaler=None,
                path: str | os.PathLike[str] | None = None, restore_rng: bool = True) -> Resumed:
        """Load the newest (or the given) checkpoint into the objects; Resumed() when none."""
        path = Path(path) if path else self.latest()
        if path is None:
            return Resumed()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged file: say which, never train from it silently
            raise RuntimeError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); "
                               "delete it to resume from the one before") from None
        unwrap(model).load_state_dict(state["model"])
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if lr_scheduler is not None and state.get("lr_scheduler") is not None:
            lr_scheduler.load_state_dict(state["lr_scheduler"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        if restore_rng:
            _set_rng_state(state["rng"])
        return Resumed(state["step"], state.get("epoch", 0), state.get("batch_in_epoch", 0),
                       state.get("extra", {}), path)


# ------------------------------------------------------------------------- loss logs

class LossLog:
    """Scalars per step to `run_dir/loss.csv` and TensorBoard (`run_dir/tb`).

    resume_step: rows after it (written by a run that was killed before its next
    checkpoint) are dropped, so a resumed run continues the same curve.
    """

    def __init__(self, run_dir: str | os.PathLike[str], resume_step: int = 0, tensorboard: bool = True):
        self.path = Path(run_dir) / "loss.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if self.path.exists():
            rows = read_loss_csv(self.path)
            rows = [r for r in rows if r["step"] <= resume_step]
            if rows:
                self.fields = list(rows[0])
            self._rewrite(rows)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is in requirements/base.txt
                log.warning("tensorboard is not installed: loss curves go to loss.csv only (pip install tensorboard)")
            else:
                self.tb = SummaryWriter(str(self.path.parent / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def _rewrite(self, rows: list[dict[str, float]]) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            if rows:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        os.replace(tmp, self.path)

    def log(self, step: int, **scalars: float) -> None:
        row = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in scalars.items()}}
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writeheader()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def read_loss_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of a loss.csv as dicts of floats (step as int)."""
    with open(path, newline="") as f:
        rows = [{k: (int(float(v)) if k == "step" else float(v)) for k, v in r.items() if v != ""}
                for r in csv.DictReader(f)]
    return rows


# --------------------------------------------------------------------------- progress

class TrainProgress:
    """A one-line display: step/total, loss, steps/s, samples/s, ETA, data-wait share.

    On a terminal it is a rich progress bar; otherwise a plain line every `every_s`
    seconds (to stderr, so logs of batch jobs stay readable).
    """

    def __init__(self, total: int, start: int = 0, enabled: bool = True, every_s: float = 10.0,
                 batch_size: int = 1):
        self.total, self.start, self.step = total, start, start
        self.enabled = enabled
        self.every_s = every_s
        self.batch_size = batch_size
        self.t0 = self._last = time.perf_counter()
        self.wait = 0.0
        self.loss = float("nan")
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("train", total=total, completed=start, info="")
            self._bar.start()

    def rates(self) -> dict[str, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        done = self.step - self.start
        sps = done / dt
        return {"steps_per_s": sps, "samples_per_s": sps * self.batch_size,
                "eta_s": (self.total - self.step) / sps if sps > 0 else float("inf"),
                "data_wait": self.wait / dt}

    def update(self, step: int, loss: float, wait_s: float) -> None:
        self.step, self.loss = step, loss
        self.wait += wait_s
        if not self.enabled:
            return
        r = self.rates()
        info = (f"loss {loss:.4f} | {r['steps_per_s']:.2f} steps/s, {r['samples_per_s']:.1f} samples/s | "
                f"data wait {r['data_wait']:.0%}")
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s or step == self.total:
            self._last = now
            eta = r["eta_s"]
            eta_txt = f"{eta / 60:.1f} min" if math.isfinite(eta) else "?"
            print(f"step {step}/{self.total} | {info} | ETA {eta_txt}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def timed(batches: Iterable[Any]) -> Iterator[tuple[Any, float]]:
    """Yield (batch, seconds spent waiting for it)."""
    it = iter(batches)
    while True:
        t = time.perf_counter()
        try:
            b = next(it)
        except StopIteration:
            return
        yield b, time.perf_counter() - t


# ------------------------------------------------------------------------------ loop

@dataclass
class TrainResult:
    step: int
    resumed_from: int
    last_loss: float
    steps_per_s: float
    samples_per_s: float
    data_wait: float  # share of wall time spent waiting for batches
    seconds: float


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch onto `device`; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def train(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, float]]],
    batches: Callable[[int], Iterable[Any]],
    steps: int,
    run_dir: str | os.PathLike[str],
    lr_scheduler=None,
    device: str | torch.device = "auto",
    amp: bool = True,
    grad_clip: float | None = 1.0,
    log_every: int = 10,
    ckpt_every: int = 200,
    keep: int = 3,
    batch_size: int = 1,
    progress: bool = True,
    resume: bool = True,
    seed: int = 0,
    on_checkpoint: Callable[[int], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train `model` for `steps` optimizer steps (in total, counting a resumed run's).

    loss_fn(model, batch) -> (scalar loss tensor, {name: float} extra scalars for the log);
    batch is on `device`; it runs inside autocast on CUDA. batches(epoch) -> an iterable
    of batches for that epoch (re-created each epoch; deterministic per epoch, so a
    resumed run skips the batches of its epoch already trained on). The model must already
    be on `device` when the optimizer is made; under torch.distributed it is wrapped in DDP
    here. on_checkpoint(step) -> extra dict stored in the checkpoint.
    Returns a TrainResult; rank 0 also writes loss.csv, tb/ and checkpoints in run_dir.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: train at least 1 step")
    if log_every < 1 or ckpt_every < 1:
        raise ValueError(f"log_every={log_every}, ckpt_every={ckpt_every}: both must be >= 1")
    dist = dist_info()
    device = resolve_device(device, dist.local_rank)
    run_dir = Path(run_dir)
    amp_ = amp_setup(device, amp)
    ckpt = Checkpointer(run_dir, keep)
    seed_everything(seed + 1000 * dist.rank)
    resumed = ckpt.restore(model, optimizer, lr_scheduler, amp_.scaler, restore_rng=dist.main) if resume else Resumed()
    if resumed.path is not None and not dist.main:
        seed_everything(seed + 1000 * dist.rank + resumed.step)
    if resumed.path is not None and dist.main:
        log.info("resumed from %s (step %d, epoch %d)", resumed.path, resumed.step, resumed.epoch)
    net = model
    if dist.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    logger = LossLog(run_dir, resumed.step) if dist.main else None
    prog = TrainProgress(steps, resumed.step, enabled=progress and dist.main, batch_size=batch_size * dist.world_size)
    step, epoch, skip = resumed.step, resumed.epoch, resumed.batch_in_epoch
    acc: dict[str, float] = {}
    acc_n = 0
    wait_log = 0.0
    t_log = time.perf_counter()
    t0 = time.perf_counter()
    last_loss = float("nan")
    net.train()
    try:
        while step < steps:
            batch_idx, skipping = skip, skip > 0
            source = batches(epoch)
            if skip:
                source = itertools.islice(source, skip, None)
                skip = 0
            got_any = False
            for batch, wait in timed(source):
                got_any = True
                batch = move_to(batch, device)
                with amp_.autocast():
                    loss, scalars = loss_fn(net, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"step {step + 1}: loss is {loss.item()} (lower the learning rate, "
                                             "or train without AMP: amp=False)")
                optimizer.zero_grad(set_to_none=True)
                if amp_.scaler is not None:
                    amp_.scaler.scale(loss).backward()
                    amp_.scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
                if amp_.scaler is not None:
                    amp_.scaler.step(optimizer)
                    amp_.scaler.update()
                else:
                    optimizer.step()
                if lr_scheduler is not None:
                    lr_scheduler.step()
                step += 1
                batch_idx += 1
                last_loss = float(loss.detach())
                for k, v in {"loss": last_loss, **scalars}.items():
                    acc[k] = acc.get(k, 0.0) + float(v)
                acc_n += 1
                wait_log += wait
                prog.update(step, last_loss, wait)
                if step % log_every == 0 or step == steps:
                    now = time.perf_counter()
                    row = {k: v / acc_n for k, v in acc.items()}
                    row = mean_over_ranks(row, dist, device)
                    row["data_wait"] = wait_log / max(now - t_log, 1e-9)
                    row["lr"] = optimizer.param_groups[0]["lr"]
                    if logger is not None:
                        logger.log(step, **row)
                    acc, acc_n, wait_log, t_log = {}, 0, 0.0, now
                if (step % ckpt_every == 0 or step == steps) and dist.main:
                    extra = on_checkpoint(step) if on_checkpoint else None
                    ckpt.save(step, model, optimizer, lr_scheduler, amp_.scaler, epoch, batch_idx, extra)
                if step >= steps:
                    break
            if not got_any and not skipping:
                raise ValueError(f"batches({epoch}) yielded nothing: the data selection is empty or smaller "
                                 "than one batch")
            if step < steps:
                epoch += 1
    finally:
        prog.close()
        if logger is not None:
            logger.close()
    r = prog.rates()
    return TrainResult(step=step, resumed_from=resumed.step, last_loss=last_loss, steps_per_s=r["steps_per_s"],
                       samples_per_s=r["samples_per_s"], data_wait=r["data_wait"],
                       seconds=time.perf_counter() - t0)
