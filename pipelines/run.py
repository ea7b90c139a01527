"""`mentor run datasets.yaml`: raw video to a dataset, two trained models and a report.

    build (curate + annotate) -> split -> train-motion -> train-video -> eval -> audit -> report

Each step writes its outputs into the run folder, then a completion marker
`RUN/steps/<step>.done` (JSON: when, how long, what it made, the fingerprint of the
settings it ran with), written last and atomically (temporary file, fsync, rename), like
the store's commit markers. A re-run skips every step whose marker is there with the same
fingerprint, so after a kill -9 the same command resumes where it stopped: the build from
the store's committed clips and finished sources, the trainers from their newest
checkpoints, the rest from the start of the step. A step whose settings changed runs again,
and so does every step after it (their markers are removed first).

Run folder:

    RUN/store/             the dataset (mentor info / verify / audit work on it)
    RUN/runs/motion/       the motion model's run (checkpoints, loss.csv, tb/, model/)
    RUN/runs/video/        the video model's run (stage1/, stage2/, model/)
    RUN/eval/              the evaluation report (index.html, eval.json, tables/, generated/)
    RUN/audit/             the dataset audit (index.html, audit.json, tables/)
    RUN/index.html         the run's report: every step, its time, links to everything
    RUN/run.json           the same as JSON
    RUN/steps/*.done       completion markers

Ray: the build runs on Ray Data (a local Ray, or --ray-address); a trainer goes to Ray Train
when it has more than one worker or a Ray address is given (pipelines/train.py). A local Ray
that the build started is stopped when the build ends (its workers and the object store would
otherwise hold memory through training). On a cluster, each Ray step's marker and the summary
name the nodes its actors ran on (`ray_nodes`: node id -> actors of the step, from the GCS's
actor table: the build's filter and annotate pools, the trainers' Ray Train workers).

Torch threads: the steps that run in this process (a one-worker trainer, the evaluation) use
each block's `threads` (the tiny presets: 1; measured on the 2-core box under load, generating
with 2 threads took about 12x the CPU seconds per frame of 1 thread).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentor.config import Config, ConfigError
from mentor.store.fs import StoreFS, StoreURL, is_url, local_work_root, store_root

log = logging.getLogger(__name__)

STEPS = ("build", "split", "train-motion", "train-video", "eval", "audit", "report")
MARKER_DIR = "steps"
# Expected seconds of each step with the tiny presets on the demo media, as measured on the
# 2-core CPU box (README, "mentor run"): the build at a load average of 5-8, the other steps
# at 30 (one torch thread, the bounded evaluation). Only a first guess for the run's ETA,
# rescaled by how fast the finished steps ran.
TINY_EXPECTED_S = {"build": 330.0, "split": 1.0, "train-motion": 68.0, "train-video": 46.0, "eval": 191.0,
                   "audit": 18.0, "report": 1.0}


# The work of the tiny presets that `make demo` runs after the build, in units whose cost the
# README's demo time rests on: training samples, video frames trained (at 64 px), frames
# generated for the evaluation (at 64 px, one per sample and denoising step, since the
# sampler's cost is per step). The bounds are the tiny presets' own values when the demo
# was timed (README, "mentor run"); tests/pipelines/test_run.py keeps the presets within
# them, so that a larger preset (or an unbounded evaluation: every frame of every clip,
# 13+ minutes for 3 demo clips) fails a test instead of silently slowing the demo.
TINY_WORK_BOUNDS = {"motion_samples": 160, "video_frames_64px": 64, "eval_frames_64px_steps": 600}


def planned_work(cfg: Config, fps: float = 25.0) -> dict[str, float]:
    """The training and evaluation work the config's blocks plan (see TINY_WORK_BOUNDS);
    evaluation frames are unbounded (inf) without eval.max_clips and eval.gen_seconds."""
    m, v, e = cfg.train.motion.resolved(), cfg.train.video.resolved(), cfg.eval.resolved()
    px = v["size"] ** 2 / 64 ** 2
    video = (v["stage1_steps"] * v["batch_size"] + v["stage2_steps"] * v["clip_batch_size"] * v["window"]) * px
    clips, seconds = e.get("max_clips"), e.get("gen_seconds")
    gen = (clips * seconds * fps * e["samples"] * e["gen_steps"] * px) if clips and seconds else float("inf")
    return {"motion_samples": m["steps"] * m["batch_size"], "video_frames_64px": video, "eval_frames_64px_steps": gen}


@dataclass
class RunLayout:
    """Where a run's outputs live (see the module docstring). `root` is a local folder. A
    run on object storage (`remote`: s3://bucket/run) keeps its store there (`remote/store`)
    and its other outputs in `root`, the run's local folder (local_work_root(remote)), from
    which each step's outputs are copied to `remote` when the step ends (`upload`)."""

    root: Path
    remote: StoreURL | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    @classmethod
    def at(cls, out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> "RunLayout":
        """The layout of the run folder `out`: a local path, or a URL on object storage."""
        if is_url(str(out)):
            remote = store_root(str(out), storage_options)
            return cls(local_work_root(remote), remote)
        return cls(store_root(str(out)))

    @property
    def store(self) -> Path | StoreURL:
        return self.remote / "store" if self.remote is not None else self.root / "store"

    motion = property(lambda self: self.root / "runs" / "motion")
    video = property(lambda self: self.root / "runs" / "video")
    eval = property(lambda self: self.root / "eval")
    audit = property(lambda self: self.root / "audit")
    report = property(lambda self: self.root / "index.html")
    summary = property(lambda self: self.root / "run.json")
    markers = property(lambda self: self.root / MARKER_DIR)

    def marker(self, step: str) -> Path:
        return self.markers / f"{step}.done"

    def where(self, path: Path) -> str:
        """Where a user finds `path`: its copy on object storage for a remote run."""
        return str(self.remote / path.relative_to(self.root).as_posix()) if self.remote is not None else str(path)

    def upload(self, step: str) -> int:
        """Copy what `step` made (and its marker) from the local folder to `remote`: the
        trainers' models and logs (not their checkpoints or Ray's run state: the local
        folder is what resumes), the reports, the run's page. Returns the files copied."""
        if self.remote is None:
            return 0
        fs = StoreFS(self.remote)
        made = {"train-motion": [self.motion], "train-video": [self.video], "eval": [self.eval],
                "audit": [self.audit], "report": [self.report]}.get(step, [])
        n = 0
        for path in [*made, self.marker(step)]:
            if path.exists():
                n += fs.put_tree(path, path.relative_to(self.root).as_posix(), skip=UPLOAD_SKIP)
        return n


# folders of a trainer's run that stay in the run's local folder (large, and only for resuming)
UPLOAD_SKIP = ("checkpoints", "ray")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # the rename itself survives a power cut once the folder is synced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def read_marker(path: Path) -> dict[str, Any] | None:
    """A step's marker, or None when missing or unreadable (a torn one cannot exist: atomic)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings(cfg: Config) -> dict[str, str]:
    """Per step, a hash of the settings it runs with (paths excluded: a moved run is the same run)."""
    d = cfg.model_dump()
    d["store"].pop("storage_options", None)  # credentials and endpoints: where the store is, not what it holds
    build_keys = ("sources", "clips", "video", "audio", "shots", "filters", "annotate", "store")
    return {
        "build": _hash({k: d[k] for k in build_keys}),
        "split": _hash(d["split"]),
        "train-motion": _hash(cfg.train.motion.resolved()),
        "train-video": _hash({**cfg.train.video.resolved(), "body": cfg.annotate.smplx.model_dir}),
        "eval": _hash(cfg.eval.resolved()),
        "audit": _hash(d["audit"]),
        "report": "",
    }


# what each step reads: its fingerprint is its settings + the outputs of these steps, so a
# build re-run that added nothing (a changed default, more failed sources) retrains nothing
DEPENDS = {"build": (), "split": ("build",), "train-motion": ("split",), "train-video": ("split",),
           "eval": ("split", "train-motion", "train-video"), "audit": ("split",),
           "report": ("build", "split", "train-motion", "train-video", "eval", "audit")}


def fingerprint(step: str, own: dict[str, str], markers: dict[str, dict[str, Any] | None]) -> str | None:
    """The step's fingerprint from its settings and its inputs' outputs; None while an input is not done."""
    ins = []
    for dep in DEPENDS[step]:
        m = markers.get(dep)
        if m is None:
            return None
        ins.append(m.get("output", ""))
    return _hash([own[step], ins])


class RunProgress:
    """The run's one display: a header line per step (i/n, the run's elapsed time and ETA),
    the step's own progress under it (the build's bar, the trainers' step lines), and a
    closing line per step."""

    def __init__(self, steps: list[str], expected: dict[str, float] | None, enabled: bool = True,
                 print_fn: Callable[[str], None] = print):
        self.steps, self.expected, self.enabled, self.print = steps, expected, enabled, print_fn
        self.t0 = time.perf_counter()
        self.actual: dict[str, float] = {}

    def eta(self, remaining: list[str]) -> float | None:
        if not self.expected:
            return None
        # the build's time depends on what was left to build: only the other steps rescale
        ran = [s for s in self.actual if s in self.expected and self.expected[s] > 0 and s != "build"]
        scale = (sum(self.actual[s] for s in ran) / sum(self.expected[s] for s in ran)) if ran else 1.0
        scale = min(max(scale, 0.2), 5.0)
        return scale * sum(self.expected.get(s, 0.0) for s in remaining)

    def start(self, i: int, step: str, todo: list[str]) -> None:
        if not self.enabled:
            return
        eta = self.eta(todo)
        left = f", about {_fmt_s(eta)} left" if eta is not None else ""
        self.print(f"\n━━ [{i}/{len(self.steps)}] {step}  (run {_fmt_s(time.perf_counter() - self.t0)}{left})")

    def done(self, i: int, step: str, seconds: float, note: str) -> None:
        self.actual[step] = seconds
        if self.enabled:
            self.print(f"   [{i}/{len(self.steps)}] {step}: {note} ({_fmt_s(seconds)})")


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass
class RunSummary:
    root: str
    remote: str | None = None  # the run folder on object storage (root: its local folder)
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def all_done_before(self) -> bool:
        return all(s["status"] == "already done" for s in self.steps)

    def render(self) -> str:
        lay = RunLayout(Path(self.root), StoreURL(self.remote) if self.remote else None)
        lines = ["everything was already done: nothing to run" if self.all_done_before else
                 f"run finished in {_fmt_s(self.wall_seconds)}"]
        for s in self.steps:
            nodes = s.get("ray_nodes")
            where = f" [Ray actors on {len(nodes)} node(s)]" if nodes else ""
            lines.append(f"  {s['step']:<13} {s['status']:<13} {_fmt_s(s.get('seconds') or 0):>7}  {s.get('note', '')}"
                         + where)
        lines += [f"store          {lay.store}", f"motion model   {lay.where(lay.motion / 'model')}",
                  f"video model    {lay.where(lay.video / 'model')}",
                  f"evaluation     {lay.where(lay.eval / 'index.html')}",
                  f"dataset audit  {lay.where(lay.audit / 'index.html')}", f"run report     {lay.where(lay.report)}"]
        if lay.remote is not None:
            lines.append(f"local folder   {lay.root} (checkpoints, step markers, build logs: what a re-run "
                         "on this machine resumes from)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def run(cfg: Config, out: str | os.PathLike[str] | None = None, ray_address: str | None = None,
        progress: bool = True, redo: str | None = None, stop_after: str | None = None,
        print_fn: Callable[[str], None] = print) -> RunSummary:
    """Run every step not yet done into the run folder `out` (default: the config's output
    with "-run" appended); see the module docstring. `redo`: run this step and every later
    one again; `stop_after`: stop once this step is done."""
    for name, value in (("redo", redo), ("stop_after", stop_after)):
        if value is not None and value not in STEPS:
            raise ConfigError(f"{name}={value!r}: not a step; the steps are {', '.join(STEPS)}")
    lay = RunLayout.at(out or default_run_dir(cfg), cfg.store.storage_options or None)
    lay.root.mkdir(parents=True, exist_ok=True)
    with _storage_options_env(cfg, lay):
        return _run_steps(cfg, lay, ray_address, progress, redo, stop_after, print_fn)


def default_run_dir(cfg: Config) -> str:
    """The run folder when none is given: the config's output with "-run" appended (a URL
    stays a URL: s3://bucket/demo -> s3://bucket/demo-run)."""
    if is_url(cfg.output):
        return cfg.output.rstrip("/") + "-run"
    default = cfg.resolve(str(store_root(cfg.output)))
    return str(default.with_name(default.name + "-run"))


@contextmanager
def _storage_options_env(cfg: Config, lay: RunLayout):
    """For a run on object storage, the config's store.storage_options also reach the
    steps that open the store from its URL alone (the trainers, their DataLoader and Ray
    workers, the evaluation) through $MENTOR_STORAGE_OPTIONS, unless that is already set."""
    from pipelines.runtime import _environ

    from mentor.store.fs import ENV_OPTIONS

    if lay.remote is None or not cfg.store.storage_options or os.environ.get(ENV_OPTIONS):
        yield
        return
    with _environ({ENV_OPTIONS: json.dumps(cfg.store.storage_options)}):
        yield


def _run_steps(cfg: Config, lay: RunLayout, ray_address: str | None, progress: bool, redo: str | None,
               stop_after: str | None, print_fn: Callable[[str], None]) -> RunSummary:
    ray_address = ray_address or cfg.ray.address
    own = settings(cfg)
    steps = list(STEPS if stop_after is None else STEPS[:STEPS.index(stop_after) + 1])
    summary = RunSummary(root=str(lay.root), remote=str(lay.remote) if lay.remote is not None else None)
    markers = {step: read_marker(lay.marker(step)) for step in STEPS}

    ran: list[str] = []

    def is_done(step: str, marks: dict[str, dict[str, Any] | None]) -> bool:
        fp, m = fingerprint(step, own, marks), marks.get(step)
        forced = (redo is not None and STEPS.index(step) >= STEPS.index(redo)) or (step == "report" and ran)
        return not forced and m is not None and fp is not None and m.get("fingerprint") == fp

    # what this run will do if no step changes its outputs (for the ETA)
    predicted, todo_all = dict(markers), []
    for step in steps:
        if not is_done(step, predicted):
            predicted[step] = {"output": f"(new {step})"}
            todo_all.append(step)
    presets = {cfg.train.motion.preset, cfg.train.video.preset, cfg.eval.preset}
    expected = {k: v for k, v in TINY_EXPECTED_S.items() if k in todo_all} if presets == {"tiny"} else None
    display = RunProgress(steps, expected, progress, print_fn)
    t0 = time.perf_counter()
    context = RunContext(cfg, lay, ray_address, progress, summary, "")
    for i, step in enumerate(steps, 1):
        if is_done(step, markers):
            summary.steps.append({"step": step, "status": "already done", "seconds": 0.0,
                                  "note": markers[step].get("note", "")})
            continue
        if markers[step] is not None and redo is None:
            summary.notes.append(f"{step}: its settings or inputs changed since it was done: run again")
        lay.marker(step).unlink(missing_ok=True)
        markers[step] = None
        context.fingerprint = fingerprint(step, own, markers) or ""
        display.start(i, step, [s for s in steps[i - 1:] if s in todo_all])
        t = time.perf_counter()
        before = (_ray_actors_per_node() or Counter()) if ray_address else None
        with _torch_threads(step_threads(cfg, step)):
            result = STEP_FUNCTIONS[step](context) or {}
        seconds = time.perf_counter() - t
        if before is not None:
            after = _ray_actors_per_node()
            if after is not None:
                grown = after - before  # the step's own actors: (node id, class) -> count
                result["ray_nodes"] = dict(sum((Counter({node: n}) for (node, _), n in grown.items()), Counter()))
                result["ray_actors"] = {node: {cls: n for (nd, cls), n in sorted(grown.items()) if nd == node}
                                        for node in result["ray_nodes"]}
        note = result.pop("note", "done")
        output = result.pop("output", context.fingerprint)
        marker = {"step": step, "fingerprint": context.fingerprint, "output": output, "seconds": round(seconds, 2),
                  "note": note, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "result": result}
        write_atomic(lay.marker(step), json.dumps(marker, indent=1, default=str))
        markers[step] = marker
        ran.append(step)
        uploaded = lay.upload(step)
        if uploaded:
            log.info("%s: %d file(s) copied to %s", step, uploaded, lay.remote)
        display.done(i, step, seconds, note)
        summary.steps.append({"step": step, "status": "done now", "seconds": round(seconds, 2), "note": note,
                              **{k: result[k] for k in ("ray_nodes", "ray_actors") if k in result}})
    summary.wall_seconds = time.perf_counter() - t0
    if not summary.all_done_before:
        write_atomic(lay.summary, json.dumps({"root": summary.root, "remote": summary.remote, "steps": summary.steps,
                                              "notes": summary.notes, "wall_seconds": round(summary.wall_seconds, 2)},
                                             indent=1))
        if lay.remote is not None:
            StoreFS(lay.remote).put_tree(lay.summary, lay.summary.name)
    return summary


def step_threads(cfg: Config, step: str) -> int:
    """Torch threads for a step run in this process (0: torch's default)."""
    block = {"train-motion": cfg.train.motion, "train-video": cfg.train.video, "eval": cfg.eval}.get(step)
    return int(block.resolved().get("threads") or 0) if block is not None else 0


@contextmanager
def _torch_threads(n: int):
    """torch.set_num_threads(n) for the block (n=0: leave it), then the old value."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _ray_actors_per_node() -> Counter | None:
    """This Ray job's own actors so far (Ray Data's filter and annotate pools, Ray Train's
    controller and workers; alive or ended, not detached helpers), counted per (node id,
    actor class), from the GCS's actor table (no dashboard needed). None when Ray is not
    connected or the table does not answer."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        from ray._private.state import actors  # the GCS's actor table; ray.util.state needs the dashboard

        job = ray.get_runtime_context().get_job_id()
        table = actors()
    except Exception as e:  # per-node counts are an extra: never fail a step over them
        log.info("Ray's actor table did not answer (%s): no per-node counts", e)
        return None
    return Counter((a["Address"]["NodeID"], a.get("ActorClassName") or "?") for a in table.values()
                   if a.get("JobID") == job and not a.get("IsDetached") and a["Address"].get("NodeID"))


@dataclass
class RunContext:
    cfg: Config
    lay: RunLayout
    ray_address: str | None
    progress: bool
    summary: RunSummary
    fingerprint: str  # of the step being run


def step_build(ctx: RunContext) -> dict[str, Any]:
    from mentor.store import Store
    from pipelines.curation import build

    import ray

    started = not ray.is_initialized()
    try:
        s = build(ctx.cfg, out=ctx.lay.store, ray_address=ctx.ray_address, progress=ctx.progress)
    finally:
        # a local Ray this build started: stop it, its processes hold memory through training
        # (on a cluster the driver stays connected, for the trainers and the per-node counts)
        if started and not (ctx.ray_address or os.environ.get("RAY_ADDRESS")):
            ray.shutdown()
    if ctx.progress:
        print(s.render())
    if s.clips_kept == 0 and not s.sources_skipped:
        if not len(Store(ctx.lay.store).clips()):
            raise ValueError(f"{ctx.lay.store}: the build kept no clip, so there is nothing to train on; see "
                             "the rejections above (`mentor info`) and loosen the filters or add sources")
    d = s.as_dict()
    store = Store(ctx.lay.store)
    output = _hash([sorted(store.clips()["clip_id"]), sorted(store.rejected()["clip_id"])])
    return {"output": output, "note": f"{s.clips_kept} clip(s) kept now, {sum(s.clips_rejected.values())} rejected, "
                    f"{s.sources_ok} source(s) ok, {len(s.sources_failed)} failed", "summary": d}


def step_split(ctx: RunContext) -> dict[str, Any]:
    from mentor.splits import assign_splits
    from mentor.store import Store

    cfg, store = ctx.cfg, Store(ctx.lay.store)
    if cfg.annotate.attributes.face_recognition_model:
        from annotate.identity import store_identities

        store.set_columns(store_identities(store, cfg.annotate.attributes.identity_min_similarity))
    clips = store.clips()
    splits = assign_splits(clips, cfg.split)
    store.set_columns(clips[["clip_id"]].assign(split=splits.to_numpy()))
    counts = {str(k): int(v) for k, v in splits.value_counts().items()}
    output = _hash(sorted(zip(clips["clip_id"], map(str, splits.to_numpy()))))
    return {"output": output, "note": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), "counts": counts}


def _train_where(ctx: RunContext) -> str:
    from mentor.store import Store

    clips = Store(ctx.lay.store).clips()
    if "split" in clips and (clips["split"] == "train").any():
        return "split == 'train'"
    raise ValueError(f"{ctx.lay.store}: no clip in the train split ({len(clips)} clips); add sources or change "
                     "split.shares")


def _claim_run_dir(ctx: RunContext, step: str, run_dir: Path) -> None:
    """A trainer resumes from the checkpoints in its run folder only when they were made with
    the same settings: a folder left by other settings is moved aside (kept, named in a note)."""
    stamp = run_dir / ".mentor-run-fingerprint"
    want = ctx.fingerprint
    if run_dir.exists() and stamp.is_file() and stamp.read_text().strip() != want:
        old = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(old)
        ctx.summary.notes.append(f"{step}: its settings changed, so its earlier run was moved to {old} "
                                 "and training starts from scratch")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(stamp, want)


def step_train_motion(ctx: RunContext) -> dict[str, Any]:
    from models.motion_train import model_preset, train_loop
    from pipelines.train import launch

    m = ctx.cfg.train.motion.resolved()
    _claim_run_dir(ctx, "train-motion", ctx.lay.motion)
    model = m["model"] if m["model"] in ("tiny", "base") else str(ctx.cfg.resolve(m["model"]))
    loop = {"store": str(ctx.lay.store), "run_dir": str(ctx.lay.motion), "where": _train_where(ctx),
            "steps": m["steps"], "batch_size": m["batch_size"], "model": model_preset(model), "lr": m["lr"],
            "ckpt_every": m["ckpt_every"], "device": m["device"], "loader_workers": m["loader_workers"],
            "progress": ctx.progress, "log_every": min(10, m["ckpt_every"])}
    r = launch(train_loop, loop, num_workers=m["workers"], use_gpu=m["gpu"], ray_address=ctx.ray_address,
               run_dir=ctx.lay.motion)
    return {"note": f"step {r.get('step')}, last loss {r.get('last_loss', float('nan')):.4f}, "
                    f"{r.get('samples_per_s', 0):.1f} samples/s", "result": r}


def step_train_video(ctx: RunContext) -> dict[str, Any]:
    from models.video_train import train_video

    v = ctx.cfg.train.video.resolved()
    _claim_run_dir(ctx, "train-video", ctx.lay.video)
    cfg = {"store": str(ctx.lay.store), "run_dir": str(ctx.lay.video), "where": _train_where(ctx),
           "size": v["size"], "height": v.get("height"), "window": v["window"], "stage1_steps": v["stage1_steps"],
           "stage2_steps": v["stage2_steps"], "batch_size": v["batch_size"], "clip_batch_size": v["clip_batch_size"],
           "lr": v["lr"], "ckpt_every": v["ckpt_every"], "log_every": min(10, v["ckpt_every"]),
           "unet_dir": _path(ctx.cfg, v.get("unet_dir")), "vae_dir": _path(ctx.cfg, v.get("vae_dir")),
           "body_model_dir": _path(ctx.cfg, ctx.cfg.annotate.smplx.model_dir), "num_workers": v["loader_workers"],
           "device": v["device"], "progress": ctx.progress}
    if v.get("channels"):
        cfg["channels"] = tuple(v["channels"])
    r = train_video(cfg, num_workers=v["workers"], use_gpu=v["gpu"], ray_address=ctx.ray_address)
    parts = [f"stage {st}: step {r[f'stage{st}_step']}, loss {r[f'stage{st}_last_loss']:.4f}"
             for st in (1, 2) if f"stage{st}_step" in r]
    return {"note": "; ".join(parts) or "both stages were done", "result": r}


def _path(cfg: Config, value: str | None) -> str | None:
    return str(cfg.resolve(value)) if value else None


def step_eval(ctx: RunContext) -> dict[str, Any]:
    from mentor.store import Store
    from models.evaluate import EvalConfig, evaluate

    e = ctx.cfg.eval.resolved()
    clips = Store(ctx.lay.store).clips()
    split = e["split"]
    have = set(clips["split"].dropna()) if "split" in clips else set()
    if split not in have:
        fallback = "val" if "val" in have else ""
        note = (f"the {split!r} split is empty ({len(clips)} clips, splits {sorted(have)}): judged on "
                f"{repr(fallback) + ' split' if fallback else 'every clip'} instead; add sources for a held-out test")
        ctx.summary.notes.append(f"eval: {note}")
        split = fallback
    ecfg = EvalConfig(fid_weights=_path(ctx.cfg, e.get("fid_weights")), fvd_weights=_path(ctx.cfg, e.get("fvd_weights")),
                      lpips_weights=_path(ctx.cfg, e.get("lpips_weights")),
                      syncnet_weights=_path(ctx.cfg, e.get("syncnet_weights")),
                      arcface_model=_path(ctx.cfg, e.get("arcface_model")), face_metrics=e["face_metrics"],
                      fit_3d=e["fit_3d"], bootstrap=e["bootstrap"], quality_frames=e["quality_frames"],
                      device=e["device"], body_model_dir=_path(ctx.cfg, ctx.cfg.annotate.smplx.model_dir),
                      max_clips=e.get("max_clips"))
    s = evaluate(ctx.lay.store, None, ctx.lay.eval, split=split or None, cfg=ecfg, model=ctx.lay.video,
                 motion_model=ctx.lay.motion, samples=e["samples"], gen_steps=e["gen_steps"],
                 gen_seconds=e.get("gen_seconds"))
    scored = sum(len({r["clip_id"] for r in m["per_clip"]}) for m in s["methods"])
    overall = {r["metric"]: r["mean"] for m in s["methods"] for r in m["overall"] if r["mean"] is not None}
    return {"note": f"{scored} clip(s) of split {split or '(all)'} scored, {len(overall)} metric(s)",
            "split": split, "overall": overall}


def step_audit(ctx: RunContext) -> dict[str, Any]:
    from mentor.audit import audit_store
    from mentor.store import Store

    r = audit_store(Store(ctx.lay.store), ctx.cfg.audit, ctx.lay.audit)
    return {"note": f"{len(r.flags)} flag(s)", "flags": [f.get("message") or str(f) for f in r.flags],
            "notes": list(r.notes)}


def step_report(ctx: RunContext) -> dict[str, Any]:
    """RUN/index.html: every step's marker (time, what it made) and links to the two reports."""
    lay = ctx.lay
    rows = []
    for step in STEPS[:-1]:
        m = read_marker(lay.marker(step)) or {}
        rows.append(f"<tr><td>{step}</td><td>{html.escape(str(m.get('note', '')))}</td>"
                    f"<td>{m.get('seconds', '')}</td><td>{m.get('finished', '')}</td></tr>")
    links = [("dataset audit", "audit/index.html"), ("model evaluation", "eval/index.html"),
             ("store", "store/"), ("motion model", "runs/motion/model/"), ("video model", "runs/video/model/")]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ctx.summary.notes)
    page = ("<!doctype html><meta charset=utf-8><title>mentor run</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;border-bottom:1px solid #ddd}</style>"
            f"<h1>mentor run: {html.escape(lay.root.name)}</h1><ul>"
            + "".join(f'<li><a href="{h}">{t}</a></li>' for t, h in links) + "</ul>"
            "<table><tr><th>step</th><th>result</th><th>seconds</th><th>finished (UTC)</th></tr>"
            + "".join(rows) + "</table>" + (f"<h2>notes</h2><ul>{notes}</ul>" if notes else ""))
    write_atomic(lay.report, page)
    return {"note": f"{lay.report.name} written"}


STEP_FUNCTIONS: dict[str, Callable[[RunContext], dict[str, Any]]] = {
    "build": step_build, "split": step_split, "train-motion": step_train_motion, "train-video": step_train_video,
    "eval": step_eval, "audit": step_audit, "report": step_report,
}
