"""mentor run: completion markers, skipping, settings changes, and resuming after kill -9.

The fast tests run the orchestration with the step functions replaced by small recorders;
the slow one runs the real `mentor run` command on a copy of the synthetic store plus one
real generated clip to build, kills it (SIGKILL to its process group) during the build,
during the motion training and during the video training, and checks that the re-run
finishes with every output, every clip once (`verify_store` clean) and every training
step logged once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipelines.run as run_mod
from mentor.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, extra: str = "") -> "object":
    (tmp_path / "src").mkdir(exist_ok=True)
    text = (f"version: 1\noutput: {tmp_path}/out\nsources:\n  - {{name: s, kind: folder, path: {tmp_path}/src}}\n"
            + extra)
    return parse_config(text, "test.yaml", str(tmp_path))


@pytest.fixture
def fake_steps(monkeypatch):
    """Every step replaced by a recorder that returns an output depending on a counter."""
    calls: list[str] = []
    outputs = {"build": "clips-v1", "split": "split-v1"}

    def fake(step):
        def fn(ctx):
            calls.append(step)
            return {"note": f"{step} ok", **({"output": outputs[step]} if step in outputs else {})}
        return fn

    monkeypatch.setattr(run_mod, "STEP_FUNCTIONS", {s: fake(s) for s in run_mod.STEPS})
    return calls, outputs


def test_second_run_skips_every_step(tmp_path, fake_steps):
    calls, _ = fake_steps
    cfg = _config(tmp_path)
    first = run_mod.run(cfg, out=tmp_path / "run", progress=False)
    assert calls == list(run_mod.STEPS) and not first.all_done_before
    markers = sorted(p.name for p in (tmp_path / "run" / "steps").iterdir())
    assert markers == sorted(f"{s}.done" for s in run_mod.STEPS)  # no temporary files left
    calls.clear()
    second = run_mod.run(cfg, out=tmp_path / "run", progress=False)
    assert calls == [] and second.all_done_before
    assert "nothing to run" in second.render()


def test_missing_marker_resumes_there_and_a_changed_setting_reruns_what_depends_on_it(tmp_path, fake_steps):
    calls, outputs = fake_steps
    cfg = _config(tmp_path)
    run_mod.run(cfg, out=tmp_path / "run", progress=False)
    # a kill during train-video: its marker (and those after it) never written
    for s in ("train-video", "eval", "audit", "report"):
        (tmp_path / "run" / "steps" / f"{s}.done").unlink()
    calls.clear()
    run_mod.run(cfg, out=tmp_path / "run", progress=False)
    assert calls == ["train-video", "eval", "audit", "report"]
    # another motion preset: motion retrains, eval and report follow; video, split, audit do not
    calls.clear()
    cfg2 = _config(tmp_path, "train:\n  motion: {steps: 7}\n")
    summary = run_mod.run(cfg2, out=tmp_path / "run", progress=False)
    assert calls == ["train-motion", "eval", "report"]
    assert any("train-motion: its settings or inputs changed" in n for n in summary.notes)
    # a build whose settings changed but that added no clip (same output) retrains nothing
    calls.clear()
    cfg3 = _config(tmp_path, "train:\n  motion: {steps: 7}\nclips: {min_seconds: 2.5}\n")
    run_mod.run(cfg3, out=tmp_path / "run", progress=False)
    assert calls == ["build", "report"]
    # ... and one that did add clips: everything after it runs again
    calls.clear()
    outputs["build"], outputs["split"] = "clips-v2", "split-v2"  # new clips: new split rows
    cfg4 = _config(tmp_path, "train:\n  motion: {steps: 7}\nclips: {min_seconds: 2.0}\n")
    run_mod.run(cfg4, out=tmp_path / "run", progress=False)
    assert calls == ["build", "split", "train-motion", "train-video", "eval", "audit", "report"]


def test_redo_and_stop_after(tmp_path, fake_steps):
    calls, _ = fake_steps
    cfg = _config(tmp_path)
    run_mod.run(cfg, out=tmp_path / "run", progress=False, stop_after="split")
    assert calls == ["build", "split"]
    calls.clear()
    run_mod.run(cfg, out=tmp_path / "run", progress=False, redo="split")
    assert calls == ["split", "train-motion", "train-video", "eval", "audit", "report"]
    with pytest.raises(ConfigError, match="not a step"):
        run_mod.run(cfg, out=tmp_path / "run", redo="training")


def test_trainer_folder_of_other_settings_is_moved_aside(tmp_path):
    summary = run_mod.RunSummary(root=str(tmp_path))
    ctx = run_mod.RunContext(_config(tmp_path), run_mod.RunLayout(tmp_path), None, False, summary, "fp-a")
    run_dir = tmp_path / "runs" / "motion"
    run_mod._claim_run_dir(ctx, "train-motion", run_dir)
    (run_dir / "checkpoints").mkdir()
    run_mod._claim_run_dir(ctx, "train-motion", run_dir)  # same settings: resumes in place
    assert (run_dir / "checkpoints").is_dir() and not summary.notes
    ctx.fingerprint = "fp-b"
    run_mod._claim_run_dir(ctx, "train-motion", run_dir)
    assert not (run_dir / "checkpoints").exists()
    moved = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("motion.old-")]
    assert len(moved) == 1 and (moved[0] / "checkpoints").is_dir() and "moved to" in summary.notes[0]


def test_config_blocks_presets_and_errors(tmp_path):
    cfg = _config(tmp_path, "train:\n  motion: {preset: gpu, steps: 5}\n  video: {size: 128}\neval: {preset: tiny}\n")
    m = cfg.train.motion.resolved()
    assert m["steps"] == 5 and m["gpu"] is True and m["model"] == "base"  # preset gpu, steps overridden
    assert cfg.train.video.resolved()["size"] == 128 and cfg.train.video.resolved()["stage1_steps"] == 16
    assert cfg.eval.resolved()["face_metrics"] is False
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, "train:\n  motion:\n    preset: huge\n  video:\n    size: 30\n    stepz: 1\n")
    text = str(e.value)
    assert "test.yaml:7: train.motion.preset" in text and "'tiny' or 'gpu'" in text
    assert "train.video.size" in text and "multiple of 8" in text
    assert "train.video.stepz: unknown key; allowed here: preset" in text


def test_repo_config_uses_the_tiny_presets():
    from mentor.config import load_config

    cfg = load_config(REPO / "datasets.yaml")
    assert {cfg.train.motion.preset, cfg.train.video.preset, cfg.eval.preset} == {"tiny"}


def test_the_tiny_presets_plan_no_more_work_than_the_timed_demo(tmp_path):
    """`make demo`'s time (README) rests on the tiny presets' work: a larger preset, or an
    evaluation of every frame of every clip, fails here instead of slowing the demo."""
    from mentor.config import load_config

    work = run_mod.planned_work(load_config(REPO / "datasets.yaml"))
    assert set(work) == set(run_mod.TINY_WORK_BOUNDS)
    for key, bound in run_mod.TINY_WORK_BOUNDS.items():
        assert 0 < work[key] <= bound, (key, work[key], bound)
    # the measure moves with what costs time: more steps, bigger frames, an unbounded evaluation
    bigger = run_mod.planned_work(_config(tmp_path, "train:\n  video: {size: 128}\n"))
    assert bigger["video_frames_64px"] == 4 * work["video_frames_64px"]
    unbounded = run_mod.planned_work(_config(tmp_path, "eval: {preset: gpu}\n"))
    assert unbounded["eval_frames_64px_steps"] == float("inf")


# ------------------------------------------------------------------------ the real command, killed

KILL_CONFIG = """version: 1
output: {root}/out
sources:
  - {{name: real, kind: folder, path: {root}/src, identity: per_source}}
video: {{size: 256}}
filters: {{min_face_px: 32}}
annotate:
  diarization: {{enabled: false}}
  asr: {{enabled: false}}
  attributes: {{enabled: false}}
split: {{seed: 0, shares: {{train: 0.5, val: 0.25, test: 0.25}}, stratify_by: []}}
train:
  motion: {{steps: 30, ckpt_every: 5, batch_size: 2}}
  video: {{stage1_steps: 4, stage2_steps: 2, ckpt_every: 2}}
eval: {{bootstrap: 20, gen_steps: 2, max_clips: 1}}
"""
# Killed at the first checkpoint of each trainer, so each resumes part-way (motion at 5 of 30:
# with one torch thread the tiny motion model runs ~13 steps/s, and 10 steps finished before
# the kill; video stage 1 at 2 of 4); one evaluated clip shows the eval ran on the resumed models.


def _start(cfg: Path, out: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "mentor.cli", "run", str(cfg), "--out", str(out)],
                            cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 1500) -> None:
    t0 = time.time()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"mentor run ended (exit {proc.returncode}) before {what}")
        if time.time() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and every process it started (its local Ray)
    proc.wait()


@pytest.mark.slow
def test_killed_three_times_the_rerun_finishes_with_every_clip_once(tmp_path, synthetic_store):
    from mentor.store import Store, verify_store
    from mentor.testmedia import make_talking_clip
    from models.training import read_loss_csv

    make_talking_clip(tmp_path / "src" / "talk.mp4", seconds=4.0, size=256, seed=3)
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(KILL_CONFIG.format(root=tmp_path))
    out, log = tmp_path / "run", tmp_path / "run.log"
    shutil.copytree(synthetic_store, out / "store")  # 6 clips to train on; the build adds the real one
    steps = out / "steps"

    # 1. during the build: once its Ray and log are up
    p = _start(cfg, out, log)
    _kill_when(p, lambda: any((out / "store" / "logs").glob("build-*.log")) and time.sleep(8) is None,
               "build started")
    assert not (steps / "build.done").exists(), log.read_text()[-3000:]
    # 2. during the motion training: at its first checkpoint
    p = _start(cfg, out, log)
    _kill_when(p, lambda: any((out / "runs" / "motion" / "checkpoints").glob("step-*.pt")), "motion checkpoint")
    assert (steps / "build.done").exists() and not (steps / "train-motion.done").exists()
    # 3. during the video training: at its first stage-1 checkpoint
    p = _start(cfg, out, log)
    _kill_when(p, lambda: any((out / "runs" / "video" / "stage1" / "checkpoints").glob("step-*.pt")),
               "video checkpoint")
    assert (steps / "train-motion.done").exists() and not (steps / "train-video.done").exists()
    # the re-run finishes
    p = _start(cfg, out, log)
    assert p.wait(timeout=1800) == 0, log.read_text()[-4000:]

    assert verify_store(out / "store") == []
    clips = Store(out / "store").clips()
    assert clips["clip_id"].is_unique and len(clips) >= 7  # the 6 synthetic clips + the real one(s)
    assert (clips["source_uri"].str.endswith("talk.mp4")).sum() >= 1
    for name, steps_wanted in (("runs/motion/loss.csv", 30), ("runs/video/stage1/loss.csv", 4),
                               ("runs/video/stage2/loss.csv", 2)):
        logged = [int(r["step"]) for r in read_loss_csv(out / name)]
        assert logged == sorted(set(logged)) and logged[-1] == steps_wanted, (name, logged)
    assert json.loads((out / "runs" / "motion" / "result.json").read_text())["step"] == 30
    assert (out / "runs" / "video" / "model" / "video.json").is_file()
    assert (out / "eval" / "eval.json").is_file() and (out / "audit" / "index.html").is_file()
    assert (out / "index.html").is_file()
    # a run that finds everything done says so and runs nothing
    r = subprocess.run([sys.executable, "-m", "mentor.cli", "run", str(cfg), "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "everything was already done" in r.stdout, r.stdout + r.stderr
