"""The `mentor` command line.

    mentor build datasets.yaml [--out DIR] [--ray-address ADDR]
    mentor annotate STORE [--config datasets.yaml]
    mentor validate-config datasets.yaml
    mentor info STORE [--json]
    mentor verify STORE
    mentor split STORE [--config datasets.yaml]
    mentor audit STORE -o report/ [--compare OTHER]
    mentor preview STORE CLIP_ID -o out.mp4
    mentor demo [--out DIR]
    mentor run datasets.yaml [--out DIR] [--ray-address A] [--redo STEP] [--stop-after STEP]
    mentor cost RUN_OR_SUMMARY.json [--kept-hours 2200] [--raw-per-kept 10] [--cores C] [--gpus G] [--gpu-stage S=N]
    mentor train-motion STORE -o RUN [--steps N] [--workers W] [--ray-address A] [--config tiny|small|base|file.json]
    mentor eval --store STORE (--generated DIR | --model RUN [--motion-model MRUN] [--samples K]) -o report/
                [--split test] [--manifest CSV] [--compare DIR2]
    mentor generate-motion --model RUN --audio speech.wav --reference ref.(png|mp4|npz) -o out/ [--samples K]
    mentor train-video --store STORE -o RUN [--size 64] [--window 8] [--stage1-steps N] [--stage2-steps N] [--unet DIR] [--vae DIR]
    mentor generate-video --image ref.jpg --audio speech.wav --model RUN [--motion m.npz | --motion-model MRUN] -o out.mp4
    mentor edit-video --video in.mp4 --region mouth|face --model RUN [--audio new.wav --motion-model MRUN] -o out.mp4
    mentor personalize --store STORE --where "identity == 'x'" --model RUN -o NEW_RUN

Exit status: 0 ok, 1 the command ran and found problems, 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from mentor.config import Config, ConfigError, load_config

REPO_CONFIG = Path(__file__).resolve().parent.parent / "datasets.yaml"


def _store_arg(store: str) -> str:
    """A store folder as an absolute path (trainers run in other processes); a URL as it is."""
    return store if "://" in store and not store.startswith("file://") else str(Path(store.removeprefix("file://")).resolve())


def _config(path: str | None) -> Config:
    return load_config(path or REPO_CONFIG)


def cmd_validate(args) -> int:
    from pipelines.curation import plan

    cfg = load_config(args.config)
    curate, annotate = plan(cfg)  # the stage graph too: a stage on without what it reads fails here
    print(f"{args.config}: ok ({len(cfg.sources)} sources, output {cfg.output}; "
          f"stages: {', '.join(s.name for s in curate + annotate)})")
    return 0


def cmd_build(args) -> int:
    from pipelines.curation import build

    cfg = load_config(args.config)
    summary = build(cfg, out=args.out, ray_address=args.ray_address, progress=not args.quiet)
    print(summary.render())
    if args.summary_json:
        Path(args.summary_json).write_text(summary.to_json())
    return 0


def cmd_annotate(args) -> int:
    from pipelines.reannotate import annotate_store

    summary = annotate_store(args.store, _config(args.config), ray_address=args.ray_address)
    print(summary.render())
    return 0


def cmd_info(args) -> int:
    from mentor.store import store_info

    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"store       {info['store']}")
    print(f"clips       {info['clips']} ({info['hours']:.4f} h), identities {info['identities']}")
    print(f"shards      {info['shards']} ({info['bytes'] / 1e6:.1f} MB)")
    print(f"splits      {info['splits']}")
    print(f"sources     {info['sources_ok']} ok, {info['sources_failed']} failed")
    for f in info["failed_sources"]:
        print(f"  failed    {f['uri']}: {f['error']}")
    print(f"rejected    {info['rejected']}  (by stage: code)")
    import pandas as pd

    from mentor.rejections import COLUMNS, render_rejections

    for line in render_rejections(pd.DataFrame(info["rejections"], columns=COLUMNS), indent="  "):
        print(line)
    return 0


def cmd_verify(args) -> int:
    from mentor.store import verify_store

    problems = verify_store(args.store, checksums=not args.fast, deep=args.deep)
    for p in problems:
        print(p)
    print(f"{args.store}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def cmd_split(args) -> int:
    from mentor.splits import assign_splits
    from mentor.store import Store

    cfg = _config(args.config)
    store = Store(args.store)
    if cfg.annotate.attributes.face_recognition_model:
        from annotate.identity import store_identities

        identities = store_identities(store)
        store.set_columns(identities)
        print(f"{args.store}: {identities['identity'].nunique()} identities from face embeddings")
    clips = store.clips()
    splits = assign_splits(clips, cfg.split)
    store.set_columns(clips[["clip_id"]].assign(split=splits.to_numpy()))
    counts = splits.value_counts().to_dict()
    print(f"{args.store}: splits assigned (seed {cfg.split.seed}): {counts}")
    return 0


def cmd_audit(args) -> int:
    from mentor.audit import audit_store
    from mentor.store import Store

    cfg = _config(args.config)
    compare = Store(args.compare) if args.compare else None
    result = audit_store(Store(args.store), cfg.audit, Path(args.out), compare=compare)
    for flag in result.flags:
        print(f"flag: {flag.get('message') or flag}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"report written: {result.html} (numbers: {result.json}, tables/*.csv)")
    return 0


def cmd_preview(args) -> int:
    import tempfile

    from mentor.store import Store

    cfg = _config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        recs = list(Store(args.store).records([args.clip_id], media_dir=tmp))  # keys checked: files stay in tmp
        if not recs:
            print(f"{args.store}: no kept clip with id {args.clip_id} (see `mentor info`)", file=sys.stderr)
            return 1
        from mentor.bodymodel import load_body_model
        from mentor.media import read_frames
        from mentor.preview import render_preview

        rec = recs[0]
        if "video" not in rec.files:
            raise ValueError(f"{args.store}: clip {args.clip_id} has no video member; run `mentor verify`")
        frames = read_frames(rec.files["video"])
        sx = cfg.annotate.smplx
        body = None
        if "smplx.transl" in rec.arrays:  # a store built without SMPL-X draws landmarks only
            try:
                body = load_body_model(cfg.resolve(sx.model_dir), gender=sx.gender, num_betas=sx.num_betas,
                                       num_expression=sx.num_expression, num_pca_comps=sx.num_pca_comps)
            except (OSError, ValueError, KeyError) as e:
                raise ValueError(f"SMPL-X model {sx.model_dir or '(synthetic)'}: cannot load ({e}); pass the "
                                 "--config the store was built with (annotate.smplx.model_dir)") from None
        try:
            render_preview(frames, rec, body, args.out)
        except (RuntimeError, ValueError, IndexError) as e:
            if body is None:
                raise
            raise ValueError(f"clip {args.clip_id}: its SMPL-X parameters do not fit the body model of the config "
                             f"({str(e).splitlines()[0][:160]}); pass the --config the store was built with") from None
    print(f"preview written: {args.out}" + ("" if body is not None else " (no SMPL-X fit in this clip: landmarks only)"))
    return 0


def cmd_demo(args) -> int:
    """Generate the demo media if missing, then `mentor run` on it (the config's presets: tiny)."""
    from mentor.testmedia import make_demo_sources

    cfg = _config(args.config)
    src_cfg = next((s for s in cfg.sources if s.kind == "folder"), None)
    if src_cfg is None:
        raise ConfigError(f"{args.config or REPO_CONFIG}: the demo needs a 'folder' source to generate media into")
    folder = cfg.resolve(src_cfg.path)
    if not folder.exists() or not any(folder.iterdir()):
        print(f"generating demo media in {folder} ...")
        make_demo_sources(folder)
    return _run(cfg, args)


def cmd_run(args) -> int:
    """build -> split -> train motion -> train video -> eval -> audit -> report (pipelines/run.py)."""
    return _run(load_config(args.config), args)


def _run(cfg: Config, args) -> int:
    from pipelines.run import run

    summary = run(cfg, out=args.out, ray_address=args.ray_address, progress=not getattr(args, "quiet", False),
                  redo=getattr(args, "redo", None), stop_after=getattr(args, "stop_after", None))
    print(summary.render())
    return 0


def cmd_cost(args) -> int:
    """Core- and GPU-hours per stage from a build's measurements, and a plan at scale (mentor/cost.py)."""
    from mentor.cost import load_summary, parse_gpu_stages, plan_cost

    plan = plan_cost(load_summary(args.measured), kept_hours=args.kept_hours, raw_per_kept=args.raw_per_kept,
                     cores=args.cores, gpus=args.gpus, gpu_stages=parse_gpu_stages(args.gpu_stage or []),
                     core_hour_price=args.core_hour_price, gpu_hour_price=args.gpu_hour_price)
    print(json.dumps(plan.as_dict(), indent=1) if args.json else plan.render())
    return 0


def cmd_train_motion(args) -> int:
    """Train the motion diffusion model on a store (models/motion_train.py via pipelines/train.py)."""
    from models.motion_train import model_preset, train_loop
    from pipelines.train import launch

    loop = {"store": _store_arg(args.store), "run_dir": str(Path(args.out).resolve()), "where": args.where,
            "steps": args.steps, "batch_size": args.batch_size, "model": model_preset(args.config),
            "device": args.device, "loader_workers": args.loader_workers, "progress": not args.quiet}
    if args.lr:
        loop["lr"] = args.lr
    if args.ckpt_every:
        loop["ckpt_every"] = args.ckpt_every
    result = launch(train_loop, loop, num_workers=args.workers, use_gpu=args.gpu, ray_address=args.ray_address,
                    run_dir=args.out)
    print(f"trained to step {result.get('step')} (resumed from {result.get('resumed_from')}), last loss "
          f"{result.get('last_loss', float('nan')):.4f}, {result.get('samples_per_s', 0):.1f} samples/s; "
          f"model: {result.get('model_dir')}")
    return 0


def cmd_train_motion_ae(args) -> int:
    """Train the motion autoencoder whose features give the Frechet motion distance (models/motion_ae.py)."""
    from models.motion_ae import model_preset, train_loop
    from pipelines.train import launch

    loop = {"store": _store_arg(args.store), "run_dir": str(Path(args.out).resolve()), "where": args.where,
            "steps": args.steps, "batch_size": args.batch_size, "model": model_preset(args.config),
            "device": args.device, "loader_workers": args.loader_workers, "progress": not args.quiet}
    result = launch(train_loop, loop, num_workers=1, run_dir=args.out)
    print(f"trained to step {result.get('step')}, last loss {result.get('last_loss', float('nan')):.4f}; "
          f"model: {result.get('model_dir')}")
    return 0


def cmd_generate_motion(args) -> int:
    """Speech + reference -> SMPL-X motion npz and preview mp4 per sample."""
    from models.motion_generate import generate_to_folder

    summary = generate_to_folder(args.model, args.audio, args.reference, args.out, seconds=args.seconds,
                                 seed=args.seed, samples=args.samples, guidance=args.guidance,
                                 scheduler=args.scheduler, steps=args.steps, reference_frame=args.reference_frame,
                                 preview=not args.no_preview, preview_size=args.preview_size,
                                 whisper_model=args.whisper_model, device=args.device)
    print(f"{summary['samples']} sample(s) of {summary['seconds']:.2f} s ({summary['frames']} frames at "
          f"{summary['fps']:g} fps) in {summary['sampling_seconds']:.2f} s -> {args.out}")
    return 0


def cmd_eval(args) -> int:
    """Judge generated videos against a store's real clips (models/evaluate.py)."""
    from models.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(fid_weights=args.fid_weights, fvd_weights=args.fvd_weights, lpips_weights=args.lpips_weights,
                     syncnet_weights=args.syncnet_weights, arcface_model=args.arcface_model,
                     niqe_params=args.niqe_params, face_metrics=not args.no_face_metrics, fit_3d=not args.no_3d,
                     real_fit=args.real_fit, body_model_dir=args.body_model_dir, bootstrap=args.bootstrap,
                     quality_frames=args.quality_frames, min_group_clips=args.min_group_clips, device=args.device,
                     seed=args.seed, max_clips=args.max_clips)
    summary = evaluate(args.store, args.generated, args.out, split=args.split or None, manifest=args.manifest,
                       compare=args.compare, cfg=cfg, where=args.where, model=args.model,
                       motion_model=args.motion_model, samples=args.samples, gen_steps=args.gen_steps,
                       gen_seconds=args.gen_seconds)
    for m in summary["methods"]:
        scored = len({r["clip_id"] for r in m["per_clip"]})
        print(f"{m['name']}: {scored} clip(s) scored, {len(m['clips_without_generated_video'])} without a "
              f"generated video, {len(m['unmatched_files'])} file(s) matching no clip")
        for r in m["overall"]:
            if r["mean"] is not None:
                print(f"  {r['metric']:>18} {r['mean']:.4g}  ({r['better']} is better)")
        for g in m["gaps"]:
            if g["flagged"]:
                print(f"  flag: {g['metric']} worse for {g['column']} = {g['worst_group']} than {g['best_group']} "
                      f"(gap {g['gap']:.3g}, interval {g['ci_low']:.3g}..{g['ci_high']:.3g})")
    for note in sorted({n for m in summary["methods"] for n in m["notes"]}):
        print(f"note: {note}")
    print(f"report written: {Path(args.out) / 'index.html'} (numbers: eval.json, tables/*.csv)")
    if not any(m["per_clip"] for m in summary["methods"]):
        # a report with no scores is not a result: say why, and fail the command
        print("error: no generated video matched a clip of the store's split: name each file <clip_id>.mp4 "
              "(or <clip_id>/<sample>.mp4, <clip_id>_s<N>.mp4), or give --manifest with clip_id and file "
              "columns", file=sys.stderr)
        return 1
    return 0


def cmd_train_video(args) -> int:
    """Train the control-conditioned video diffusion model, both stages (models/video_train.py)."""
    from models.video_train import train_video

    cfg = {"store": _store_arg(args.store), "run_dir": str(Path(args.out).resolve()), "where": args.where,
           "size": args.size, "height": args.height, "window": args.window, "stage1_steps": args.stage1_steps,
           "stage2_steps": args.stage2_steps, "batch_size": args.batch_size, "clip_batch_size": args.clip_batch_size,
           "lr": args.lr, "unet_dir": args.unet, "vae_dir": args.vae, "body_model_dir": args.body_model_dir,
           "num_workers": args.loader_workers, "device": args.device, "progress": not args.quiet,
           "stages": tuple(args.stages)}
    r = train_video(cfg, num_workers=args.workers, use_gpu=args.gpu, ray_address=args.ray_address)
    for st in (1, 2):
        if f"stage{st}_step" in r:
            print(f"stage {st}: step {r[f'stage{st}_step']}, last loss {r[f'stage{st}_last_loss']:.4f}, "
                  f"{r[f'stage{st}_samples_per_s']:.2f} samples/s, data wait {100 * r[f'stage{st}_data_wait']:.0f} %")
    print(f"model: {r.get('model')}")
    return 0


def cmd_generate_video(args) -> int:
    """Reference image + speech (+ motion) -> talking video (models/video_cli.py)."""
    from models.video_cli import generate_video

    r = generate_video(args.image, args.audio, args.model, args.out, motion=args.motion,
                       motion_model=args.motion_model, device=args.device, steps=args.steps,
                       overlap=args.overlap, seed=args.seed, reference_fit=args.reference_fit,
                       seconds=args.seconds)
    print(f"{r['frames']} frames at {r['fps']:g} fps ({r['frames_per_s']} frames/s) -> {r['out']}")
    return 0


def cmd_edit_video(args) -> int:
    """Regenerate the mouth or face of a video; every other pixel kept (models/video_cli.py)."""
    from models.video_cli import edit_video

    r = edit_video(args.video, args.region, args.model, args.out, audio=args.audio, fit=args.fit,
                   motion_model=args.motion_model, device=args.device, steps=args.steps, seed=args.seed)
    print(f"{r['frames']} frames, {100 * r['region_share']:.1f} % of the pixels regenerated -> {r['out']}")
    return 0


def cmd_personalize(args) -> int:
    """Fine-tune a trained video model on one identity's clips (models/video_cli.py)."""
    from models.video_cli import personalize

    r = personalize(args.store, args.where, args.model, args.out, steps=args.steps, lr=args.lr, device=args.device)
    print(f"personalised model: {r.get('model')}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mentor", description="Build, check and audit MENTOR-style talking-human datasets.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("build", help="run the curation + annotation pipeline into a store")
    s.add_argument("config", help="datasets.yaml")
    s.add_argument("--out", help="store folder (overrides the config's output)")
    s.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    s.add_argument("--summary-json", help="also write the run summary here as JSON")
    s.set_defaults(fn=cmd_build)

    s = sub.add_parser("annotate", help="re-run the clip annotators on an existing store (no re-encoding)")
    s.add_argument("store")
    s.add_argument("--config", help="datasets.yaml with the annotator settings (default: the repo's)")
    s.add_argument("--ray-address", default=None)
    s.set_defaults(fn=cmd_annotate)

    s = sub.add_parser("validate-config", help="check a datasets.yaml and say what is wrong")
    s.add_argument("config")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("info", help="what a store holds")
    s.add_argument("store")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("verify", help="check every shard against the index")
    s.add_argument("store")
    s.add_argument("--fast", action="store_true", help="skip sha256 checksums")
    s.add_argument("--deep", action="store_true", help="also decode every member (video, audio, records, arrays)")
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("split", help="(re)assign identity-disjoint train/val/test splits in the index")
    s.add_argument("store")
    s.add_argument("--config")
    s.set_defaults(fn=cmd_split)

    s = sub.add_parser("audit", help="diversity and bias audit of a store, as an HTML report")
    s.add_argument("store")
    s.add_argument("-o", "--out", required=True, help="report folder")
    s.add_argument("--compare", help="a second store to show side by side")
    s.add_argument("--config")
    s.set_defaults(fn=cmd_audit)

    s = sub.add_parser("preview", help="draw landmarks and the fitted mesh over a clip")
    s.add_argument("store")
    s.add_argument("clip_id")
    s.add_argument("-o", "--out", required=True)
    s.add_argument("--config")
    s.set_defaults(fn=cmd_preview)

    s = sub.add_parser("demo", help="generate the demo media, then `mentor run` on it (tiny presets: minutes on a CPU)")
    s.add_argument("--out", help="run folder (default: the config's output + '-run')")
    s.add_argument("--config", help="default: the repo's datasets.yaml")
    s.add_argument("--ray-address", default=None)
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("run", help="build -> split -> train motion + video -> eval -> audit; re-running resumes")
    s.add_argument("config", help="datasets.yaml (train.motion, train.video and eval blocks; presets tiny | gpu)")
    s.add_argument("--out", help="run folder: store/, runs/, eval/, audit/, index.html (default: output + '-run')")
    s.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: ray.address, $RAY_ADDRESS)")
    s.add_argument("--redo", choices=["build", "split", "train-motion", "train-video", "eval", "audit", "report"],
                   help="run this step and every later one again")
    s.add_argument("--stop-after", choices=["build", "split", "train-motion", "train-video", "eval", "audit"],
                   help="stop once this step is done")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("cost", help="core-/GPU-hours per stage from a build, and what a MENTOR-sized build costs")
    s.add_argument("measured", help="a `mentor run` folder or a `mentor build --summary-json` file")
    s.add_argument("--kept-hours", type=float, default=2200.0, help="hours of kept video to plan for (MENTOR: 2200)")
    s.add_argument("--raw-per-kept", type=float, default=10.0, help="raw hours per kept hour (MENTOR: about 10)")
    s.add_argument("--cores", type=int, default=512, help="CPU cores of the cluster")
    s.add_argument("--gpus", type=int, default=0, help="GPUs of the cluster")
    s.add_argument("--gpu-stage", action="append", metavar="STAGE=N",
                   help="run STAGE on GPUs, one GPU doing the work of N cores (your measured figure); repeatable")
    s.add_argument("--core-hour-price", type=float, default=None)
    s.add_argument("--gpu-hour-price", type=float, default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_cost)

    s = sub.add_parser("train-motion", help="train the speech-to-motion diffusion model on a store")
    s.add_argument("store")
    s.add_argument("-o", "--out", required=True, help="run folder (checkpoints, loss.csv, tb/, model/); re-run resumes")
    s.add_argument("--where", default="split == 'train'", help="pandas query over the index (default: the train split)")
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--batch-size", type=int, default=32, help="global batch, split over the workers")
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--ckpt-every", type=int, default=None, help="steps between checkpoints (default 200)")
    s.add_argument("--workers", type=int, default=1, help="data-parallel Ray Train workers (1: no Ray)")
    s.add_argument("--gpu", action="store_true", help="one GPU per worker (nccl); default CPU (gloo)")
    s.add_argument("--ray-address", default=None, help="an existing Ray cluster")
    s.add_argument("--config", default="base", help="model size: tiny | small | base | a JSON file of model settings")
    s.add_argument("--device", default="auto")
    s.add_argument("--loader-workers", type=int, default=1, help="DataLoader processes per training worker")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    s.set_defaults(fn=cmd_train_motion)

    s = sub.add_parser("train-motion-ae", help="train the motion autoencoder of the Frechet motion distance (FMD)")
    s.add_argument("store")
    s.add_argument("-o", "--out", required=True, help="run folder (checkpoints, loss.csv, model/); re-run resumes")
    s.add_argument("--where", default="split == 'train'", help="pandas query over the index (default: the train split)")
    s.add_argument("--steps", type=int, default=3000)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--config", default="base", help="tiny | base | a JSON file of autoencoder settings")
    s.add_argument("--device", default="auto")
    s.add_argument("--loader-workers", type=int, default=0, help="DataLoader processes")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    s.set_defaults(fn=cmd_train_motion_ae)

    s = sub.add_parser("generate-motion", help="SMPL-X motion from speech and a reference (npz + preview mp4)")
    s.add_argument("--model", required=True, help="a train-motion run folder or its model/ folder")
    s.add_argument("--audio", required=True, help="speech (any format ffmpeg reads)")
    s.add_argument("--reference", required=True, help="an image, a video clip, or an npz of smplx.* arrays")
    s.add_argument("--reference-frame", type=int, default=0, help="which frame of a clip / npz is the reference")
    s.add_argument("-o", "--out", required=True, help="output folder")
    s.add_argument("--seconds", type=float, default=None, help="trim or pad the audio to this length")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--samples", type=int, default=1, help="different motions for the same input")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance on audio (model default)")
    s.add_argument("--scheduler", choices=["dpmsolver++", "ddim", "ddpm"], default=None)
    s.add_argument("--steps", type=int, default=None, help="denoising steps (model default; ddpm: all)")
    s.add_argument("--whisper-model", default=None, help="the Whisper checkpoint, for a model trained on Whisper features")
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-preview", action="store_true", help="write the npz files only")
    s.add_argument("--preview-size", type=int, default=256, help="longer side of the preview video in pixels")
    s.set_defaults(fn=cmd_generate_motion)
    s = sub.add_parser("eval", help="judge generated videos against a store's real clips (metrics per perceived group)")
    s.add_argument("--store", required=True)
    s.add_argument("--generated", help="folder of generated videos named by clip id (or --manifest)")
    s.add_argument("--model", help="a `mentor train-video` run: generate the videos first (into --generated, "
                   "default OUT/generated) from each clip's first frame and audio")
    s.add_argument("--motion-model", help="with --model: sample the motion from speech with this `train-motion` run "
                   "(default: the clip's own stored motion, a reconstruction run)")
    s.add_argument("--samples", type=int, default=1, help="with --model: samples per clip (best-of-K, stochasticity)")
    s.add_argument("--gen-steps", type=int, default=25, help="with --model: denoising steps")
    s.add_argument("--gen-seconds", type=float, help="with --model: generate and judge only each clip's first seconds")
    s.add_argument("--max-clips", type=int, help="judge at most this many clips, spread over the groups (a light look)")
    s.add_argument("-o", "--out", required=True, help="report folder (index.html, eval.json, tables/)")
    s.add_argument("--split", default="test", help="the store's split to judge against ('' for every clip)")
    s.add_argument("--where", default=None, help="an extra pandas query over the index")
    s.add_argument("--manifest", help="CSV with columns file,clip_id mapping other file names to clips")
    s.add_argument("--compare", help="a second folder of generated videos, shown side by side")
    s.add_argument("--fid-weights", help="torch-fidelity's pt_inception-2015-12-05-6726825d.pth")
    s.add_argument("--fvd-weights", help="the I3D TorchScript file i3d_torchscript.pt")
    s.add_argument("--lpips-weights", help="torchvision's alexnet-owt-7be5be79.pth")
    s.add_argument("--syncnet-weights", help="syncnet_python's syncnet_v2.model (LSE-D / LSE-C)")
    s.add_argument("--arcface-model", help="an ArcFace ONNX model (identity distance)")
    s.add_argument("--niqe-params", help="NIQE model parameters, .mat or .npz (default: the MATLAB release's, shipped)")
    s.add_argument("--body-model-dir", help="SMPL-X folder for the 3D metrics (default: $MENTOR_SMPLX_DIR / synthetic)")
    s.add_argument("--real-fit", choices=["stored", "refit"], default="stored",
                   help="compare with the real clip's stored SMPL-X fit, or refit its video the same way")
    s.add_argument("--no-3d", action="store_true", help="skip the SMPL-X fit metrics (LME, head pose, jitter)")
    s.add_argument("--no-face-metrics", action="store_true",
                   help="skip every landmark-based metric (sync, identity, 3D): image metrics only, much faster")
    s.add_argument("--quality-frames", type=int, default=4, help="frames per video for CPBD and NIQE")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    s.add_argument("--min-group-clips", type=int, default=3, help="smaller groups are shown, never flagged")
    s.add_argument("--device", default="auto")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("train-video", help="train the control-conditioned video diffusion model (two stages)")
    s.add_argument("--store", required=True)
    s.add_argument("-o", "--out", required=True, help="run folder (re-running resumes it)")
    s.add_argument("--where", default="split == 'train'", help="index filter of the training clips")
    s.add_argument("--size", type=int, default=64, help="frame side (width) in pixels")
    s.add_argument("--height", type=int, default=None, help="frame height in pixels (default: --size, square)")
    s.add_argument("--window", type=int, default=8, help="frames per clip in stage 2 and per generated window")
    s.add_argument("--stage1-steps", type=int, default=1000)
    s.add_argument("--stage2-steps", type=int, default=1000)
    s.add_argument("--stages", type=int, nargs="+", default=[1, 2])
    s.add_argument("--batch-size", type=int, default=8, help="stage 1 frames per step")
    s.add_argument("--clip-batch-size", type=int, default=2, help="stage 2 clips per step")
    s.add_argument("--lr", type=float, default=1e-4)
    s.add_argument("--unet", help="pretrained UNet2DConditionModel folder for the frozen base")
    s.add_argument("--vae", help="AutoencoderKL folder: train in its latent space")
    s.add_argument("--body-model-dir", help="SMPL-X folder (default $MENTOR_SMPLX_DIR, else synthetic)")
    s.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP); 1 = in this process")
    s.add_argument("--gpu", action="store_true")
    s.add_argument("--ray-address", default=None)
    s.add_argument("--loader-workers", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_train_video)

    s = sub.add_parser("generate-video", help="reference image + speech -> talking video (temporal outpainting)")
    s.add_argument("--image", required=True, help="reference image (fitted with the project's SMPL-X fitter)")
    s.add_argument("--audio", required=True, help="speech (muxed into the output)")
    s.add_argument("--model", required=True, help="a train-video run folder")
    s.add_argument("--motion", help="npz of smplx.* arrays driving the body (else --motion-model)")
    s.add_argument("--motion-model", help="a train-motion run folder: motion from the speech")
    s.add_argument("--reference-fit", help="npz of the image's smplx.* arrays + smplx.camera (skips fitting it)")
    s.add_argument("--seconds", type=float, default=None, help="only the first seconds of the speech")
    s.add_argument("-o", "--out", required=True)
    s.add_argument("--steps", type=int, default=25, help="DDIM steps")
    s.add_argument("--overlap", type=float, default=0.5, help="share of each window conditioned on frames made")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.set_defaults(fn=cmd_generate_video)

    s = sub.add_parser("edit-video", help="regenerate the mouth or face of a video; other pixels unchanged")
    s.add_argument("--video", required=True)
    s.add_argument("--region", required=True, choices=["mouth", "face"])
    s.add_argument("--model", required=True, help="a train-video run folder")
    s.add_argument("--audio", help="new speech (needs --motion-model); default: keep the video's")
    s.add_argument("--motion-model")
    s.add_argument("--fit", help="npz of the video's smplx.* arrays (default: fit it with the project's annotators)")
    s.add_argument("-o", "--out", required=True, help="output mp4 (lossless H.264 RGB)")
    s.add_argument("--steps", type=int, default=25)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.set_defaults(fn=cmd_edit_video)

    s = sub.add_parser("personalize", help="fine-tune a trained video model on one identity's clips")
    s.add_argument("--store", required=True)
    s.add_argument("--where", required=True, help="e.g. \"identity == 'x'\"")
    s.add_argument("--model", required=True, help="the train-video run to start from")
    s.add_argument("-o", "--out", required=True, help="new run folder")
    s.add_argument("--steps", type=int, default=200)
    s.add_argument("--lr", type=float, default=5e-5)
    s.add_argument("--device", default="auto")
    s.set_defaults(fn=cmd_personalize)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # MediaPipe's TFLite chatter
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was committed stays; the same command resumes", file=sys.stderr)
        return 130
    except Exception as e:
        if args.verbose:
            raise
        code, message = _error_message(e, args)
        print(f"error: {message}", file=sys.stderr)
        return code


def _error_message(e: Exception, args) -> tuple[int, str]:
    """(exit status, one line) for an error that ends a command: what failed and the fix."""
    import errno
    import traceback

    from mentor.media import DiskFull, MediaError
    from mentor.store import StoreError

    if isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
        where = getattr(e, "path", None) or e.filename or getattr(args, "out", None) or getattr(args, "store", "")
        return 1, (f"disk full writing {where}: free space (or use another --out) and run the same command "
                   "again; nothing half-written was committed")
    if isinstance(e, (StoreError, MediaError, ValueError, FileNotFoundError)):
        return 2, str(e)
    from pipelines.runtime import RayStartError

    if isinstance(e, RayStartError):  # its message says the fix: whole, not cut as an unexpected error's
        return 1, str(e)
    frames = traceback.extract_tb(e.__traceback__)
    if type(e).__module__.startswith("ray") or any(f"{os.sep}ray{os.sep}" in f.filename for f in frames[-3:]):
        address = getattr(args, "ray_address", None) or os.environ.get("RAY_ADDRESS") or "a local Ray"
        return 1, (f"Ray failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}) "
                   f"with {address}: check --ray-address / ray.address, free memory and disk, or run `ray stop` "
                   "to clear a stale local Ray; the same command resumes")
    if isinstance(e, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return 2, f"{e.filename}: {e.strerror}; pass a path you can write (a folder for stores and reports)"
    if isinstance(e, OSError):
        return 1, f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return 1, f"unexpected {type(e).__name__}: {str(e)[:300]}{where} (run with -v for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
