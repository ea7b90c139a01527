"""The SMPL-X ground-truth scenarios (mentor/body/scenarios.py) and the benchmark that uses them
(benchmarks/smplx_truth.py): the landmarks are smplx's own output projected, out-of-frame points
are flagged as MediaPipe does, the poses are what the scenario says, and --quick runs."""

import json

import numpy as np
import pytest
import torch

from mentor.body import Camera, load_body_model
from mentor.body.scenarios import SCENARIOS, Scenario, make_truth

T = 12


@pytest.fixture(scope="module")
def body():
    torch.set_num_threads(1)
    return load_body_model()


@pytest.fixture(scope="module")
def talking(body):
    return make_truth(body, SCENARIOS["talking"], T)


def test_landmarks_are_smplx_forward_projected(body, talking):
    """Each landmark array entry the fitter reads is smplx's own output point, projected with the true camera."""
    from annotate.correspondences import all_targets

    p = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in talking.params.items()}
    p["betas"] = p["betas"].expand(T, -1)
    with torch.no_grad():
        raw = body.model(**p, return_verts=True)  # the library itself, not mentor.body's wrapper
    cam = Camera.from_array(talking.camera)
    checked = 0
    for t in all_targets():
        uv = cam.project(raw.joints[:, t.point.output_index][:, None])[:, 0].numpy()
        np.testing.assert_allclose(talking.clean[t.source][:, t.index, :2], uv, atol=0.05)
        checked += 1
    assert checked == len(all_targets()) > 100
    # the noisy arrays differ from the clean ones by about the scenario's noise, not more
    a, c = talking.arrays["landmarks.face"], talking.clean["landmarks.face"]
    d = np.linalg.norm(a[..., :2] - c[..., :2], axis=-1)
    assert 0.5 < np.nanmedian(d) < 3 * SCENARIOS["talking"].noise_px
    # MediaPipe-like relative z: the nose is nearer the camera than the hips (negative z)
    assert np.nanmedian(talking.arrays["landmarks.pose"][:, 0, 2]) < 0
    assert talking.present.all() and np.isfinite(talking.arrays["landmarks.pose"][:, 11, :2]).all()


def test_camera_distance_tilt_and_framing(body):
    for name in ("near_1px", "far_1px"):
        sc = SCENARIOS[name]
        truth = make_truth(body, sc, T)
        chest = truth.joints[:, 9]
        assert abs(np.median(chest[:, 2]) - sc.distance) < 0.15  # the person at the scenario's distance
        head = truth.uv[:, :, 1][truth.in_frame].min()
        assert head > 0  # the head is in the picture
    # different seeds: different tilt and pan (the body's up axis is not the image's)
    ups = []
    for name in ("talking", "beats", "crossed"):
        truth = make_truth(body, SCENARIOS[name], 3)
        up = truth.joints[0, 12] - truth.joints[0, 0]
        ups.append(up / np.linalg.norm(up))
    assert max(np.degrees(np.arccos(np.clip(a @ b, -1, 1))) for a in ups for b in ups) > 3


def test_out_of_frame_points_have_low_visibility(body):
    truth = make_truth(body, SCENARIOS["cut_chest"], T)
    pose = truth.arrays["landmarks.pose"]
    # elbows and wrists (MediaPipe 13-16) are below the frame: low visibility, placed beyond or at the border
    assert (pose[:, 13:17, 3] < 0.3).all()
    assert (pose[:, 13:17, 1] > 512 - 20).all()
    assert (pose[:, [11, 12], 3] > 0.85).all()  # the shoulders are in the picture
    assert np.isnan(truth.arrays["landmarks.left_hand"]).all()  # hands out of frame: not detected
    assert np.isfinite(truth.arrays["landmarks.face"][:, 33, :2]).all()
    # the truth's arms hang: upper arms within 20 degrees of the torso's down axis
    down = truth.joints[:, 0] - truth.joints[:, 12]
    for sh, el in ((16, 18), (17, 19)):
        arm = truth.joints[:, el] - truth.joints[:, sh]
        cos = (arm * down).sum(-1) / np.linalg.norm(arm, axis=-1) / np.linalg.norm(down, axis=-1)
        assert (np.degrees(np.arccos(cos)) < 20).all()


def test_forearms_point_toward_and_away(body):
    """'toward': the wrist nearer the camera than the elbow; 'away': farther (camera z grows away)."""
    for name, sign in (("toward", -1), ("away", 1)):
        truth = make_truth(body, SCENARIOS[name], 25)
        fore = truth.joints[:, [20, 21]] - truth.joints[:, [18, 19]]
        depth_share = fore[..., 2] / np.linalg.norm(fore, axis=-1)
        assert (sign * depth_share > 0.25).mean() > 0.9, (name, depth_share)


def test_dropouts_and_outliers(body):
    key = make_truth(body, SCENARIOS["drop_keyframe"], 40, keyframe_stride=8)
    gone = np.flatnonzero(~key.present)
    assert len(gone) == 1 and gone[0] % 8 == 0 and 0 < gone[0] < 39
    assert np.isnan(key.arrays["landmarks.face"][gone[0]]).all()
    runs = make_truth(body, SCENARIOS["drop_runs"], 100)
    assert 0.05 <= (~runs.present).mean() <= 0.09
    out = make_truth(body, Scenario("o", "talking", outliers=0.3, seed=2), 40)
    clean = make_truth(body, Scenario("o", "talking", outliers=0.0, seed=2), 40)
    jump = np.nanmax(np.abs(out.arrays["landmarks.pose"][..., :2] - clean.arrays["landmarks.pose"][..., :2]))
    assert jump > 30
    with pytest.raises(ValueError, match="motion"):
        Scenario("bad", "dancing")


def test_benchmark_quick_runs_and_reports_goals(tmp_path, capsys):
    from benchmarks.smplx_truth import main

    path = tmp_path / "truth.json"
    results = main(["--quick", "--frames", "30", "--scenarios", "talking", "--baseline-frames", "0",
                    "--json", str(path)])
    out = capsys.readouterr().out
    m = results["talking"]
    assert m["frames"] == 30 and m["err2d"] < 5, out  # the fit follows the landmarks
    assert 0 < m["pa"]["all"] < 100 and np.isfinite(m["jitter3d_ratio"]) and -1 <= m["betas_r"] <= 1
    for text in ("PA-MPJPE", "neck/head", "fingers", "worst visible frame", "jitter", "depth flips", "bones",
                 "frames/s", "goal", "betas correlation"):
        assert text in out, text
    saved = json.loads(path.read_text())
    assert saved["talking"]["figures"]["err2d"] == pytest.approx(m["err2d"])
    assert len(saved["talking"]["reprojection_px"]) == 30
