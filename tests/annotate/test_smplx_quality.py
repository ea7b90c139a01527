"""Per-frame quality of SMPL-X fits (issue 16 item 4): bad frames are flagged and counted, a run
of them rejects a clip whose clip-level scores pass, smplx.frame_ok is stored beside the
parameters, the preview marks bad frames and unobserved joints, and training windows leave the
bad frames out."""

import numpy as np
import pytest

import annotate.smplx_fit as smplx_fit
from annotate.smplx_quality import BETWEEN_BAD, DEPTH, MISSING, REPROJECTION, frame_gates, frame_quality, longest_run
from mentor.body import SmplxParams
from mentor.body.scenarios import SCENARIOS, make_truth
from mentor.config import SmplxConfig
from mentor.record import ClipRecord

T = 100
FPS = 25.0


@pytest.fixture(scope="module")
def truth(body):
    return make_truth(body, SCENARIOS["talking"], T)


def _record(truth, frames=None):
    n = frames or truth.num_frames
    rec = ClipRecord(id="q", source_id="s", source_uri="synthetic", start=0, end=n / FPS, fps=FPS,
                     width=truth.size[0], height=truth.size[1])
    for k, a in truth.arrays.items():
        rec.add_array(k, a[:n], FPS)
    return rec


def test_longest_run():
    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == (3, 4)
    assert longest_run(np.zeros(5, bool)) == (0, -1)
    assert longest_run(np.ones(3, bool)) == (3, 0)


def test_frames_flagged_by_reason():
    cfg = SmplxConfig()
    error = np.full(10, 4.0)
    error[2] = np.nan  # nothing observed
    error[5] = 100.0 * (cfg.max_frame_reprojection_face + 0.01)
    depth = np.ones(10, np.float32)
    depth[7] = cfg.min_depth_confidence / 2
    q = frame_quality(error, 100.0, depth, cfg)
    assert q.flags[2] == MISSING and q.flags[5] == REPROJECTION and q.flags[7] == DEPTH
    assert np.flatnonzero(~q.frame_ok).tolist() == [2, 5]  # depth is flagged, not gating, by default
    assert q.reprojection_face[0] == pytest.approx(0.04)
    assert "reprojection" in q.describe(5) and q.describe(0) == ""
    strict = frame_quality(error, 100.0, depth, cfg.model_copy(update={"depth_gates_frames": True}))
    # frame 6 passed on its own but sits alone between two bad frames: not trusted either
    assert np.flatnonzero(~strict.frame_ok).tolist() == [2, 5, 6, 7] and strict.flags[6] == BETWEEN_BAD
    assert "alone between bad frames" in strict.describe(6)
    with pytest.raises(ValueError, match="face_px"):
        frame_quality(error, 0.0, None, cfg)
    with pytest.raises(ValueError, match="depth_confidence"):
        frame_quality(error, 100.0, depth[:4], cfg)


def test_gates_count_bad_frames():
    cfg = SmplxConfig()
    face = 100.0
    good = np.full(250, 3.0)
    assert frame_gates(frame_quality(good, face, None, cfg), FPS, cfg) == []
    run = good.copy()
    n = int(cfg.max_bad_run_s * FPS) + 3
    run[100:100 + n] = 100 * face  # a run just over the limit: rejected although the share is small
    (code, detail, value, threshold), = frame_gates(frame_quality(run, face, None, cfg), FPS, cfg)
    assert code == "bad_run" and value == pytest.approx(n / FPS) and threshold == cfg.max_bad_run_s
    assert "from frame 100" in detail
    scattered = np.full(200, 3.0)
    scattered[::4] = np.nan  # 25 % of frames unobserved, never two in a row
    failed = frame_gates(frame_quality(scattered, face, None, cfg), FPS, cfg)
    assert [f[0] for f in failed] == ["bad_frames"] and failed[0][2] == pytest.approx(0.25)


def _fake_fit(reprojection_px, depth=None):
    """fit_clip's stand-in: a FitResult with the given per-frame reprojection (the rest neutral)."""
    def fit(sparse, targets, xy, conf, camera, image_size, **kw):
        n = len(xy)
        params = SmplxParams.zeros(n, 10, 10, 12)
        return smplx_fit.FitResult(
            params=params, camera=np.asarray(camera, np.float32),
            reprojection_px=np.asarray(reprojection_px, np.float32),
            points2d=np.zeros((n, len(targets), 2), np.float32), joints=np.zeros((n, 55, 3), np.float32),
            jitter=0.5, seconds=0.1, depth_confidence=np.ones(n, np.float32) if depth is None else depth,
            observed=np.ones((n, 55), bool))
    return fit


def test_bad_run_rejects_a_clip_whose_mean_passes(body, truth, monkeypatch):
    """A clip with a 1.2 s run of badly fitted frames: its mean reprojection is under the clip gate
    (it passed before), now it is rejected with bad_run and its frames are marked."""
    cfg = SmplxConfig(focal_length=1000.0, device="cpu")
    fitter = smplx_fit.SmplxFitter(cfg, body_model=body)
    face_px = smplx_fit.face_height_px(truth.arrays["landmarks.face"], 128.0)
    per_frame = np.full(T, 0.02 * face_px)
    per_frame[40:70] = 0.2 * face_px  # 30 frames = 1.2 s, twice the clip gate's mean each
    mean = float(per_frame.mean())
    assert mean / face_px < cfg.max_reprojection_face
    assert fitter.quality_gates(mean, 0.5, 1.0, 1.0, 1.0, face_px) == []  # the clip-level gates pass it
    monkeypatch.setattr(smplx_fit, "fit_clip", _fake_fit(per_frame))
    rec = fitter(_record(truth))
    assert rec.status["smplx"] == "done"
    assert rec.reject_code == "bad_run", rec.rejected
    assert rec.rejection_info.value == pytest.approx(1.2) and rec.rejection_info.threshold == cfg.max_bad_run_s
    ok = rec.arrays["smplx.frame_ok"].data
    assert ok.dtype == np.uint8 and ok.shape == (T,)
    assert np.flatnonzero(ok == 0).tolist() == list(range(40, 70))
    assert (rec.arrays["smplx.frame_flags"].data[40:70] == REPROJECTION).all()
    np.testing.assert_allclose(rec.arrays["smplx.reprojection_face"].data, per_frame / face_px, rtol=1e-4)
    assert rec.scores["smplx.bad_frame_share"] == pytest.approx(0.3)
    assert rec.scores["smplx.bad_run_s"] == pytest.approx(1.2)
    # a short run is cut (frames not ok) without rejecting the clip
    short = np.full(T, 0.02 * face_px)
    short[40:45] = 0.2 * face_px
    monkeypatch.setattr(smplx_fit, "fit_clip", _fake_fit(short))
    rec = fitter(_record(truth))
    assert rec.kept and np.flatnonzero(rec.arrays["smplx.frame_ok"].data == 0).tolist() == list(range(40, 45))


@pytest.mark.slow
def test_real_fit_with_a_corrupted_run_is_rejected(body, truth):
    """The real fitter on landmarks that scatter for 1.2 s (MediaPipe on a blurred stretch: every
    point off by 0.14 face heights at random): the clip's mean reprojection passes the clip gate,
    the counted bad frames reject it, and the scattered frames are the ones marked."""
    cfg = SmplxConfig(focal_length=1000.0, device="cpu")
    fitter = smplx_fit.SmplxFitter(cfg, body_model=body)
    rec = _record(truth)
    face_px = smplx_fit.face_height_px(truth.arrays["landmarks.face"], 128.0)
    rng = np.random.default_rng(0)
    for name in truth.arrays:
        a = rec.arrays[name].data.copy()
        a[40:70, :, :2] += rng.normal(0, 0.14 * face_px, a[40:70, :, :2].shape)
        rec.add_array(name, a, FPS)
    rec = fitter(rec)
    reproj = rec.arrays["smplx.reprojection_face"].data
    assert np.nanmean(reproj) < cfg.max_reprojection_face  # the clip-level gate alone would keep it
    assert rec.reject_code == "bad_run", (rec.rejected, reproj.round(3).tolist())
    bad = np.flatnonzero(rec.arrays["smplx.frame_ok"].data == 0)
    assert set(range(42, 68)) <= set(bad.tolist()) and bad.min() >= 38 and bad.max() <= 72, bad


def test_preview_marks_bad_frames_and_unobserved_joints(body, truth, tmp_path):
    from mentor.media import read_frames
    from mentor.preview import BAD_FRAME, UNOBSERVED, draw_quality, posed_joints, render_preview

    n = 3
    rec = _record(truth, n)
    for k, v in truth.params.items():
        rec.add_array(f"smplx.{k}", np.repeat(v, n, 0) if k == "betas" else v[:n].astype(np.float32), FPS)
    rec.add_array("smplx.camera", np.repeat(truth.camera[None], n, 0), FPS)
    rec.add_array("smplx.frame_ok", np.array([1, 0, 1], np.uint8), FPS)
    rec.add_array("smplx.frame_flags", np.array([0, REPROJECTION, 0], np.uint8), FPS)
    observed = np.ones((n, 55), np.uint8)
    observed[:, 18] = 0  # the left elbow is the prior's guess
    rec.add_array("smplx.observed", observed, FPS)
    joints = posed_joints(rec, body)
    np.testing.assert_allclose(joints, truth.joints[:n], atol=1e-4)
    imgs = np.zeros((n, 512, 512, 3), np.uint8)
    assert not draw_quality(imgs[0], rec, 0, joints[0]) and draw_quality(imgs[1], rec, 1, joints[1])
    assert (imgs[1][:3, 100:400] == BAD_FRAME).all() and not imgs[0][:3].any()  # the border
    from annotate.correspondences import all_targets

    k = next(i for i, t in enumerate(all_targets()) if t.source == "landmarks.pose" and t.index == 13)
    elbow = truth.uv[0, k]  # MediaPipe pose 13: the left elbow
    ring = imgs[0][int(elbow[1]) - 9:int(elbow[1]) + 10, int(elbow[0]) - 9:int(elbow[0]) + 10]
    assert (ring == UNOBSERVED).all(-1).sum() > 10  # a magenta ring where the fit put the elbow
    out = render_preview(np.zeros((n, 512, 512, 3), np.uint8), rec, body, tmp_path / "p.mp4")
    video = read_frames(out).astype(int)
    red = lambda img: (img[:4, 50:450, 0] > 150).mean() > 0.9 and (img[:4, 50:450, 1] < 100).mean() > 0.9  # noqa: E731
    assert red(video[1]) and not red(video[0]) and not red(video[2])


def test_windows_leave_bad_frames_out(tmp_path):
    from mentor.store.windows import WindowDataset
    from mentor.store.writer import StoreWriter

    root = tmp_path / "store"
    ok = np.ones(50, np.uint8)
    ok[10:15] = 0
    with StoreWriter(root) as writer:
        rec = ClipRecord(id="c1", source_id="s", source_uri="synthetic", start=0, end=2.0, fps=FPS, width=64,
                         height=64)
        rec.add_array("smplx.transl", np.zeros((50, 3), np.float32), FPS)
        rec.add_array("smplx.frame_ok", ok, FPS)
        writer.add(rec)
        writer.commit()
    kw = dict(frames=20, mode="sequential", video=False, audio=False, arrays=("smplx.*",))
    windows = list(WindowDataset(root, **kw))
    assert [w["start"] for w in windows] == [0, 20, 40]
    valid = np.concatenate([w["valid"].numpy() for w in windows])
    assert np.flatnonzero(~valid[:50]).tolist() == list(range(10, 15))
    assert not valid[50:].any()  # padding past the clip's end, as before
    plain = np.concatenate([w["valid"].numpy() for w in WindowDataset(root, fit_quality=False, **kw)])
    assert plain[:50].all()
