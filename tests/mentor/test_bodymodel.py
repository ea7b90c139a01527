"""The synthetic SMPL-X file loads through smplx.create and runs; bad files say which key."""

import numpy as np
import pytest
import torch

from mentor.body import BodyModelError, load_body_model, validate_smplx_file, write_synthetic_smplx


@pytest.fixture(scope="session")
def synthetic_dir():
    return write_synthetic_smplx()


def test_synthetic_loads_with_smplx_create(synthetic_dir):
    import smplx

    model = smplx.create(str(synthetic_dir), model_type="smplx", use_pca=True, num_pca_comps=12,
                         use_face_contour=True)
    assert model.v_template.shape[0] >= 9930 and model.J_regressor.shape[0] == 55
    body_pose = torch.zeros(1, 63)
    body_pose[0, 17 * 3 + 1] = -1.0  # bend the left elbow
    out = model(body_pose=body_pose, jaw_pose=torch.tensor([[0.3, 0, 0]]), expression=torch.ones(1, 10))
    assert out.joints.shape == (1, 55 + 21 + 68, 3)
    j = out.joints[0].detach().numpy()
    assert j[15, 1] > j[12, 1] > j[0, 1]  # head above neck above pelvis
    assert j[20, 2] > j[18, 2] + 0.1  # bent elbow: left wrist in front of the elbow
    assert j[55, 2] > j[15, 2]  # nose keypoint in front of the head joint
    assert np.isfinite(out.vertices.detach().numpy()).all()


def test_load_body_model_labels_synthetic(synthetic_dir, monkeypatch):
    monkeypatch.delenv("MENTOR_SMPLX_DIR", raising=False)
    bm = load_body_model(synthetic_dir)
    assert bm.synthetic and bm.label == "synthetic"


def test_malformed_file_names_the_key(tmp_path, synthetic_dir):
    data = dict(np.load(synthetic_dir / "smplx" / "SMPLX_NEUTRAL.npz"))
    bad = tmp_path / "smplx"
    bad.mkdir()
    broken = dict(data)
    del broken["lmk_faces_idx"]
    np.savez(bad / "SMPLX_NEUTRAL.npz", **broken)
    with pytest.raises(BodyModelError, match="lmk_faces_idx"):
        load_body_model(tmp_path)
    broken = dict(data, posedirs=data["posedirs"][:, :, :100])
    np.savez(bad / "SMPLX_NEUTRAL.npz", **broken)
    with pytest.raises(BodyModelError, match="posedirs.*486"):
        validate_smplx_file(bad / "SMPLX_NEUTRAL.npz")


def test_missing_folder_says_how_to_fix(tmp_path):
    with pytest.raises(BodyModelError, match="SMPLX_NEUTRAL"):
        load_body_model(tmp_path)
