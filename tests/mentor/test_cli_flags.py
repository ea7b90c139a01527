"""Every flag of `mentor` run through `mentor.cli.main` (issue 15 item 7).

`mentor build`'s flags are in tests/pipelines/test_build_cli.py; the flags other test files
already run are listed in INVENTORY below (`test_every_flag_is_run_by_some_test` keeps that
list and the parser in step: a new flag without a test fails it).

Two kinds of test here:
- real runs on tiny inputs (a copy of the session's synthetic store, tiny untrained models)
  for the flags whose effect is cheap to see: verify, split, audit, preview, cost, run and
  demo (their steps replaced by recorders: the orchestration is real), the trainers for a
  step or two, eval's weight flags;
- for the flags that only hand a value to a costly callee (Ray Train workers, a GPU, eval's
  metric settings, the generators' sampling settings), the callee is replaced by a recorder
  and the test checks that the parsed value arrives where it takes effect, by name and type.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from mentor import cli
from mentor.cli import main

TESTS = Path(__file__).resolve().parents[1]


def _flags() -> dict[str, list[str]]:
    """{verb: [its option strings, the long form of each]} from the real parser."""
    p = cli.parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    out = {"": [a.option_strings[-1] for a in p._actions
                if a.option_strings and not isinstance(a, argparse._HelpAction)]}
    for verb, sp in sub.choices.items():
        out[verb] = [a.option_strings[-1] for a in sp._actions
                     if a.option_strings and not isinstance(a, argparse._HelpAction)]
    return out


# Flags run by other test files (verb -> flags); everything else is run in this file.
INVENTORY = {
    "": {"--verbose": "tests/pipelines/test_build_cli.py"},
    "build": {f: "tests/pipelines/test_build_cli.py" for f in ("--out", "--ray-address", "--quiet", "--summary-json")},
    "info": {"--json": "tests/mentor/test_store_remote.py"},
    "preview": {"--out": "tests/mentor/test_reliability.py"},
    "run": {"--out": "tests/pipelines/test_run.py"},
    "cost": {f: "tests/mentor/test_cost.py" for f in ("--kept-hours", "--cores", "--json")},
    "train-motion": {f: "tests/models/test_motion_train.py" for f in ("--out", "--steps", "--batch-size",
                                                                       "--ckpt-every", "--config", "--loader-workers",
                                                                       "--quiet")},
    "train-motion-ae": {f: "tests/models/test_motion_ae.py" for f in ("--out", "--steps", "--batch-size", "--config",
                                                                       "--quiet")},
    "generate-motion": {f: "tests/models/test_motion.py" for f in ("--model", "--audio", "--reference", "--out",
                                                                    "--seconds", "--seed", "--samples",
                                                                    "--preview-size")},
    "eval": {f: "tests/models/test_eval.py" for f in ("--store", "--generated", "--out", "--split",
                                                       "--no-face-metrics", "--quality-frames", "--bootstrap")},
    "generate-video": {f: "tests/models/test_video_cli.py" for f in ("--image", "--audio", "--model",
                                                                      "--motion-model", "--reference-fit",
                                                                      "--seconds", "--out", "--steps", "--device")},
    "edit-video": {f: "tests/models/test_video_cli.py" for f in ("--video", "--region", "--model", "--audio",
                                                                  "--motion-model", "--fit", "--out", "--steps",
                                                                  "--device")},
    "personalize": {f: "tests/models/test_video_cli.py" for f in ("--store", "--where", "--model", "--out", "--steps",
                                                                   "--device")},
}


def test_every_flag_is_run_by_some_test():
    """Each flag of the parser is either run in this file or listed in INVENTORY with a file
    that passes it to `mentor` (as a quoted string); a flag added without a test fails here."""
    here = Path(__file__).read_text()
    missing = []
    for verb, flags in _flags().items():
        for flag in flags:
            where = INVENTORY.get(verb, {}).get(flag)
            text = (TESTS.parent / where).read_text() if where else here
            short = {"--out": "-o", "--verbose": "-v"}.get(flag)
            if f'"{flag}"' not in text and not (short and f'"{short}"' in text):
                missing.append(f"{verb or 'mentor'} {flag}")
    assert not missing, f"flags no test runs: {missing}"


@pytest.fixture
def store_copy(synthetic_store, tmp_path) -> Path:
    """A private copy of the session's synthetic store (6 clips, 3 identities, 64 px)."""
    return Path(shutil.copytree(synthetic_store, tmp_path / "store"))


def _yaml(tmp_path: Path, extra: str = "", name: str = "cfg.yaml") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    cfg = tmp_path / name
    cfg.write_text(f"version: 1\noutput: {tmp_path}/out\nsources:\n"
                   f"  - {{name: s, kind: folder, path: {tmp_path}/src}}\n" + extra)
    return cfg


# ------------------------------------------------------------ store verbs: real runs

def _zero_member(store: Path, suffix: str) -> str:
    """Overwrite the bytes of the first shard member ending in `suffix` with zeros (the
    shard's size unchanged); returns the member's name."""
    shard = sorted((store / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
    with open(shard, "r+b") as f:
        f.seek(member.offset_data)
        f.write(b"\0" * member.size)
    return member.name


def test_verify_fast_skips_checksums_and_deep_decodes(store_copy, capsys):
    assert main(["verify", str(store_copy), "--fast"]) == 0
    assert main(["verify", str(store_copy), "--deep"]) == 0
    capsys.readouterr()
    name = _zero_member(store_copy, ".mp4")
    assert main(["verify", str(store_copy)]) == 1  # sha256 of the shard
    assert "sha256" in capsys.readouterr().out
    assert main(["verify", str(store_copy), "--fast"]) == 0  # same size: only a checksum or a decode sees it
    assert main(["verify", str(store_copy), "--fast", "--deep"]) == 1
    out = capsys.readouterr().out
    assert name.rsplit(".", 1)[0].split("/")[-1] in out and "sha256" not in out


def test_split_config_seed_and_shares(store_copy, tmp_path, capsys):
    from mentor.store import Store

    cfg = _yaml(tmp_path, "split: {seed: 3, shares: {train: 0.5, test: 0.5}}\n")
    assert main(["split", str(store_copy), "--config", str(cfg)]) == 0
    assert "(seed 3)" in capsys.readouterr().out
    clips = Store(store_copy).clips()
    assert set(clips["split"]) <= {"train", "test"} and clips.groupby("identity")["split"].nunique().max() == 1
    bad = _yaml(tmp_path, "split: {shares: {train: 0.5}}\n", "bad.yaml")
    assert main(["split", str(store_copy), "--config", str(bad)]) == 2
    assert "add up to 0.5" in capsys.readouterr().err


def test_audit_out_compare_and_config(store_copy, synthetic_store, tmp_path, capsys):
    other = Path(shutil.copytree(synthetic_store, tmp_path / "other"))
    cfg = _yaml(tmp_path, "audit: {example_clips: 0, strip_clips: 0, min_group_clips: 1, max_share_gap: 0.05,\n"
                          "        targets: {attr.skin_tone_group: {light: 0.97, dark: 0.03}}}\n")
    out = tmp_path / "report"
    assert main(["audit", str(store_copy), "-o", str(out), "--compare", str(other), "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert f"report written: {out / 'index.html'}" in printed
    assert "flag:" in printed  # the config's targets: no synthetic store has 97 % light
    d = json.loads((out / "audit.json").read_text())
    assert d["summary"]["compare"]["name"] == "other"
    assert "store vs other" in (out / "index.html").read_text()


def test_preview_config_names_the_body_model_it_cannot_load(synthetic_store, tmp_path, capsys):
    from mentor.store import Store

    clip = sorted(Store(synthetic_store).clips()["clip_id"])[0]
    cfg = _yaml(tmp_path, f"annotate: {{smplx: {{model_dir: {tmp_path / 'no_smplx'}}}}}\n")
    code = main(["preview", str(synthetic_store), clip, "-o", str(tmp_path / "p.mp4"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "no_smplx" in err and "--config" in err and not (tmp_path / "p.mp4").exists()


# ------------------------------------------------------------------------------ cost

SUMMARY = {"hours_in": 2.0, "hours_out": 0.5, "clips_kept": 40,
           "stage_seconds": {"prepare": 720.0, "filter": 3600.0, "landmarks": 1800.0, "smplx": 900.0}}


def test_cost_raw_per_kept_gpus_gpu_stage_and_prices(tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(SUMMARY))
    base = ["cost", str(path), "--kept-hours", "100", "--cores", "100", "--json"]
    assert main(base + ["--raw-per-kept", "5"]) == 0
    five = json.loads(capsys.readouterr().out)
    assert five["raw_hours"] == 500 and five["gpu_hours"] == 0
    assert main(base + ["--gpus", "2", "--gpu-stage", "smplx=10", "--gpu-stage", "landmarks=4",
                        "--core-hour-price", "0.05", "--gpu-hour-price", "2"]) == 0
    plan = json.loads(capsys.readouterr().out)
    by = {s["stage"]: s for s in plan["stages"]}
    assert by["smplx"]["plan_core_hours"] == 0 and by["landmarks"]["plan_core_hours"] == 0
    assert plan["gpu_hours"] == pytest.approx(100 * 1800 / 3600 / 10 + 100 * 3600 / 3600 / 4)
    money = plan["core_hours"] * 0.05 + plan["gpu_hours"] * 2
    assert any(f"at 0.05/core-hour and 2/GPU-hour: {money:,.0f}" in n for n in plan["notes"])
    assert main(base + ["--gpu-stage", "smplx=10"]) == 2  # no --gpus
    assert "pass --gpus" in capsys.readouterr().err
    assert main(base + ["--gpus", "1", "--gpu-stage", "smplx"]) == 2
    assert "STAGE=N" in capsys.readouterr().err


# ------------------------------------------------------- run and demo: real orchestration

@pytest.fixture
def recorded_steps(monkeypatch):
    """`mentor run`'s step functions replaced by recorders of (step, ray_address, progress)."""
    import pipelines.run as run_mod

    calls: list[tuple[str, str | None, bool]] = []

    def fake(step):
        def fn(ctx):
            calls.append((step, ctx.ray_address, ctx.progress))
            return {"note": f"{step} ok", **({"output": step} if step in ("build", "split") else {})}
        return fn

    monkeypatch.setattr(run_mod, "STEP_FUNCTIONS", {s: fake(s) for s in run_mod.STEPS})
    return calls


def test_run_stop_after_redo_quiet_and_ray_address(recorded_steps, tmp_path, capsys):
    cfg, out = _yaml(tmp_path), tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--stop-after", "split", "--quiet"]) == 0
    assert recorded_steps == [("build", None, False), ("split", None, False)]
    recorded_steps.clear()
    assert main(["run", str(cfg), "--out", str(out), "--redo", "split", "--ray-address", "10.0.0.1:6379"]) == 0
    assert [s for s, _, _ in recorded_steps] == ["split", "train-motion", "train-video", "eval", "audit", "report"]
    assert {(a, p) for _, a, p in recorded_steps} == {("10.0.0.1:6379", True)}
    with pytest.raises(SystemExit) as e:  # argparse: a step that does not exist
        main(["run", str(cfg), "--redo", "training"])
    assert e.value.code == 2 and "invalid choice: 'training'" in capsys.readouterr().err


def test_demo_out_config_and_ray_address(recorded_steps, tmp_path, capsys):
    cfg = _yaml(tmp_path)
    (tmp_path / "src" / "mine.mp4").write_bytes(b"x")  # media present: none generated
    assert main(["demo", "--config", str(cfg), "--out", str(tmp_path / "demo"), "--ray-address", "auto"]) == 0
    from pipelines.run import STEPS

    assert [s for s, _, _ in recorded_steps] == list(STEPS)
    assert {a for _, a, _ in recorded_steps} == {"auto"}
    assert (tmp_path / "demo" / "steps" / "report.done").is_file() and "generating" not in capsys.readouterr().out
    no_folder = tmp_path / "urls.yaml"
    no_folder.write_text("version: 1\nsources:\n  - {name: u, kind: urls, items: [https://example.com/a.mp4]}\n")
    assert main(["demo", "--config", str(no_folder)]) == 2
    assert "needs a 'folder' source" in capsys.readouterr().err


# ------------------------------------------- flags that hand a value to a costly callee

def _recorder(monkeypatch, module: str, name: str, result):
    """Replace module.name with a recorder of its calls returning `result`."""
    import importlib

    calls: list[dict] = []

    def fake(*args, **kwargs):
        calls.append({"args": args, **kwargs})
        return result(*args, **kwargs) if callable(result) else result

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return calls


def test_annotate_config_and_ray_address(monkeypatch, synthetic_store, tmp_path, capsys):
    from pipelines.summary import BuildSummary

    calls = _recorder(monkeypatch, "pipelines.reannotate", "annotate_store", lambda s, c, **kw: BuildSummary(store=s))
    cfg = _yaml(tmp_path, "split: {seed: 11}\n")
    assert main(["annotate", str(synthetic_store), "--config", str(cfg), "--ray-address", "auto"]) == 0
    (call,) = calls
    store, c = call["args"]
    assert store == str(synthetic_store) and c.split.seed == 11 and call["ray_address"] == "auto"
    assert "clips: 0 kept" in capsys.readouterr().out
    assert main(["annotate", str(synthetic_store), "--config", str(tmp_path / "none.yaml")]) == 2


TRAINED = {"step": 3, "resumed_from": None, "last_loss": 0.5, "samples_per_s": 2.0, "model_dir": "m"}


def test_train_motion_workers_gpu_ray_address_lr_where_device(monkeypatch, tmp_path, capsys):
    calls = _recorder(monkeypatch, "pipelines.train", "launch", TRAINED)
    assert main(["train-motion", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--workers", "3", "--gpu",
                 "--ray-address", "ray://head:10001", "--lr", "0.002", "--where", "identity == 'a'",
                 "--device", "cuda:1"]) == 0
    (call,) = calls
    loop = call["args"][1]
    assert (call["num_workers"], call["use_gpu"], call["ray_address"]) == (3, True, "ray://head:10001")
    assert loop["lr"] == 0.002 and loop["where"] == "identity == 'a'" and loop["device"] == "cuda:1"
    assert "trained to step 3" in capsys.readouterr().out
    assert main(["train-motion", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--config", "huge"]) == 2
    assert "--config 'huge': use 'tiny', 'small', 'base' or a JSON file" in capsys.readouterr().err
    assert main(["train-motion-ae", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--config", "small"]) == 2
    assert "use 'tiny', 'base' or a JSON file of autoencoder settings" in capsys.readouterr().err


def test_train_motion_ae_where_device_loader_workers(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, "pipelines.train", "launch", TRAINED)
    assert main(["train-motion-ae", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--where", "split == 'val'",
                 "--device", "cpu", "--loader-workers", "2"]) == 0
    loop = calls[0]["args"][1]
    assert (loop["where"], loop["device"], loop["loader_workers"]) == ("split == 'val'", "cpu", 2)


def test_train_video_flags_reach_a_valid_trainer_config(monkeypatch, tmp_path):
    from models.video_train import VideoTrainConfig

    calls = _recorder(monkeypatch, "models.video_train", "train_video", {"model": "m"})
    argv = ["train-video", "--store", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--where", "split == 'val'",
            "--size", "48", "--height", "32", "--window", "6", "--stage1-steps", "7", "--stage2-steps", "5",
            "--stages", "2", "--batch-size", "3", "--clip-batch-size", "4", "--lr", "0.003", "--unet", "u",
            "--vae", "v", "--body-model-dir", "b", "--workers", "2", "--gpu", "--ray-address", "auto",
            "--loader-workers", "1", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    (call,) = calls
    cfg = VideoTrainConfig(**call["args"][0])  # every key a trainer field, every value valid
    assert cfg.frame_size == (48, 32) and cfg.stages == (2,) and cfg.where == "split == 'val'"
    assert (cfg.window, cfg.stage1_steps, cfg.stage2_steps, cfg.batch_size, cfg.clip_batch_size) == (6, 7, 5, 3, 4)
    assert (cfg.lr, cfg.unet_dir, cfg.vae_dir, cfg.body_model_dir) == (0.003, "u", "v", "b")
    assert (cfg.num_workers, cfg.device, cfg.progress) == (1, "cpu", False)
    assert (call["num_workers"], call["use_gpu"], call["ray_address"]) == (2, True, "auto")


def test_generate_motion_sampling_flags(monkeypatch, tmp_path, capsys):
    done = {"samples": 1, "seconds": 2.0, "frames": 50, "fps": 25.0, "sampling_seconds": 0.1}
    calls = _recorder(monkeypatch, "models.motion_generate", "generate_to_folder", done)
    argv = ["generate-motion", "--model", "m", "--audio", "a.wav", "--reference", "r.npz", "-o", str(tmp_path),
            "--reference-frame", "4", "--guidance", "2.5", "--scheduler", "ddim", "--steps", "7", "--whisper-model",
            "w.pt", "--device", "cpu", "--no-preview"]
    assert main(argv) == 0
    c = calls[0]
    assert (c["reference_frame"], c["guidance"], c["scheduler"], c["steps"]) == (4, 2.5, "ddim", 7)
    assert (c["whisper_model"], c["device"], c["preview"]) == ("w.pt", "cpu", False)
    with pytest.raises(SystemExit):
        main(argv[:-5] + ["--scheduler", "euler"])
    assert "invalid choice: 'euler'" in capsys.readouterr().err


def test_eval_model_and_metric_flags(monkeypatch, tmp_path):
    scored = {"name": "v", "per_clip": [{"clip_id": "a"}], "clips_without_generated_video": [],
              "unmatched_files": [], "overall": [], "gaps": [], "notes": []}
    calls = _recorder(monkeypatch, "models.evaluate", "evaluate", {"methods": [scored]})
    argv = ["eval", "--store", "s", "-o", str(tmp_path), "--model", "v", "--motion-model", "mm", "--samples", "3",
            "--gen-steps", "2", "--gen-seconds", "1.5", "--max-clips", "4", "--where", "identity == 'a'",
            "--manifest", "m.csv", "--compare", "other", "--fid-weights", "f", "--fvd-weights", "i3d",
            "--lpips-weights", "l", "--syncnet-weights", "sn", "--arcface-model", "af", "--niqe-params", "n.npz",
            "--body-model-dir", "b", "--real-fit", "refit", "--no-3d", "--min-group-clips", "5", "--device", "cpu",
            "--seed", "9"]
    assert main(argv) == 0
    c = calls[0]
    assert (c["model"], c["motion_model"], c["samples"], c["gen_steps"], c["gen_seconds"]) == ("v", "mm", 3, 2, 1.5)
    assert (c["where"], c["manifest"], c["compare"], c["split"]) == ("identity == 'a'", "m.csv", "other", "test")
    e = c["cfg"]
    assert (e.fid_weights, e.fvd_weights, e.lpips_weights, e.syncnet_weights, e.arcface_model, e.niqe_params) == (
        "f", "i3d", "l", "sn", "af", "n.npz")
    assert (e.body_model_dir, e.real_fit, e.fit_3d, e.face_metrics) == ("b", "refit", False, True)
    assert (e.min_group_clips, e.device, e.seed, e.max_clips) == (5, "cpu", 9, 4)
    assert main(argv + ["--max-clips", "0"]) == 2  # EvalConfig: "max_clips=0: must be >= 1"


def test_generate_video_overlap_seed_edit_video_seed_personalize_lr(monkeypatch, tmp_path):
    gen = _recorder(monkeypatch, "models.video_cli", "generate_video",
                    {"frames": 1, "fps": 25.0, "frames_per_s": 1.0, "out": "o.mp4"})
    edit = _recorder(monkeypatch, "models.video_cli", "edit_video", {"frames": 1, "region_share": 0.1, "out": "o.mp4"})
    pers = _recorder(monkeypatch, "models.video_cli", "personalize", {"model": "m"})
    assert main(["generate-video", "--image", "i.png", "--audio", "a.wav", "--model", "m", "-o", "o.mp4",
                 "--motion", "m.npz", "--overlap", "0.25", "--seed", "5"]) == 0
    assert (gen[0]["motion"], gen[0]["overlap"], gen[0]["seed"]) == ("m.npz", 0.25, 5)
    assert main(["edit-video", "--video", "v.mp4", "--region", "face", "--model", "m", "-o", "o.mp4",
                 "--seed", "6"]) == 0
    assert edit[0]["seed"] == 6
    assert main(["personalize", "--store", "s", "--where", "identity == 'a'", "--model", "m", "-o", "n",
                 "--lr", "0.001"]) == 0
    assert pers[0]["lr"] == 0.001


# --------------------------------------------------- the trainers, for real on tiny inputs

def test_gpu_flag_without_a_gpu_says_so_instead_of_training_on_the_cpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --gpu is honoured")
    assert main(["train-motion", str(tmp_path / "s"), "-o", str(tmp_path / "r"), "--gpu", "--steps", "1"]) == 2
    assert "0 GPU(s)" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["train-video", "--store", str(tmp_path / "s"), "-o", str(tmp_path / "v"), "--gpu"]) == 2
    assert "drop --gpu" in capsys.readouterr().err


@pytest.mark.slow  # both stages for one step at 32x24 px: ~10 CPU-s
def test_train_video_non_square_both_stages_through_the_cli(synthetic_store, tmp_path, capsys):
    """`--size 32 --height 24`: the store's square 64 px clips are trained as 32x24 frames."""
    from mentor.store import Store

    clip = Store(synthetic_store).clips("split == 'train'")["clip_id"].iloc[0]
    run = tmp_path / "run"
    argv = ["train-video", "--store", str(synthetic_store), "-o", str(run), "--where", f"clip_id == '{clip}'",
            "--size", "32", "--height", "24", "--window", "4", "--stage1-steps", "1", "--stage2-steps", "1",
            "--batch-size", "1", "--clip-batch-size", "1", "--lr", "0.001", "--device", "cpu",
            "--loader-workers", "0", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "stage 1: step 1" in out and "stage 2: step 1" in out
    meta = json.loads((run / "model" / "video.json").read_text())
    assert (meta["size"], meta["height"]) == (32, 24)
    assert main(argv + ["--height", "20"]) == 2  # not a multiple of 8 (the last --height counts)
    assert "height=20: must be a multiple of 8" in capsys.readouterr().err


def test_ray_that_does_not_start_is_explained_whole(monkeypatch, tmp_path, capsys):
    """A build on a loaded machine whose local Ray never came up: the error ends with the
    fix (it was cut at 300 characters, mid-word, as an "unexpected" error)."""
    import pipelines.curation
    from pipelines.runtime import RayStartError

    def build(*a, **kw):
        raise RayStartError("starting a local Ray: Ray's node did not start in 3 tries (last: timed out) at a load "
                            "average of 17.1 on 2 cores; Ray gives a new node a fixed 30 s to register. Run the "
                            "command "
                            "again when the machine is less busy (it resumes where it stopped), raise "
                            "MENTOR_RAY_START_TRIES, or start Ray once yourself (`ray start --head`) and pass "
                            "--ray-address auto")

    monkeypatch.setattr(pipelines.curation, "build", build)
    assert main(["build", str(_yaml(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: starting a local Ray") and err.rstrip().endswith("--ray-address auto")
    assert "unexpected" not in err


def test_run_trains_video_at_the_configs_height(recorded_steps, monkeypatch, synthetic_store, tmp_path):
    """`mentor run` with train.video {size: 64, height: 48}: the video trainer gets 64x48 frames."""
    import pipelines.run as run_mod
    from models.video_train import VideoTrainConfig

    monkeypatch.setitem(run_mod.STEP_FUNCTIONS, "train-video", run_mod.step_train_video)
    got = _recorder(monkeypatch, "models.video_train", "train_video",
                    lambda cfg, **kw: {"model": "m", "frame_size": VideoTrainConfig(**cfg).frame_size})
    out = tmp_path / "run"
    shutil.copytree(synthetic_store, out / "store")
    cfg = _yaml(tmp_path, "train: {video: {size: 64, height: 48}}\n")
    assert main(["run", str(cfg), "--out", str(out), "--stop-after", "train-video", "--quiet"]) == 0
    assert VideoTrainConfig(**got[0]["args"][0]).frame_size == (64, 48)


def test_config_train_video_height_is_checked(tmp_path, capsys):
    from mentor.config import load_config

    assert load_config(_yaml(tmp_path, "train: {video: {height: 48}}\n")).train.video.resolved()["height"] == 48
    assert "height" not in load_config(_yaml(tmp_path)).train.video.resolved()  # unset: square
    assert main(["validate-config", str(_yaml(tmp_path, "train: {video: {height: 50}}\n"))]) == 2
    err = capsys.readouterr().err
    assert "train.video.height" in err and "multiple of 8" in err, err


def test_progress_line_off_a_terminal_keeps_its_elapsed_time_and_eta():
    """A build's bar written to a file or pipe (CI, `2> log`) as it ends: the whole line,
    elapsed time and ETA included (rich's 80 columns cut them to "0:0…")."""
    import io

    from mentor.record import ClipRecord, SourceRecord
    from pipelines.progress import Progress

    stream = io.StringIO()
    bar = Progress(2, stream=stream)
    src = SourceRecord.from_uri("file:///a.mp4")
    bar.clip(ClipRecord.for_span(src, 0.0, 36.0))
    bar.source_done(src, failed=True)
    bar.close()
    shown = stream.getvalue()
    assert "…" not in shown and re.search(r"\d:\d\d:\d\d ETA (\d:\d\d:\d\d|-:--:--)", shown), shown
