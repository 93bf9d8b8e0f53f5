"""Files a user points kd_det at never run code: teacher .pkl / .pth weights, teacher
YAML configs, checkpoints given to the exporter. Model-zoo-style .pkl files still load."""
import os
import pickle

import pytest
import torch
from detectron2.modeling import build_model

from kd_det.checkpoint import SafeDetectionCheckpointer
from kd_det.engine import export_student

from .detection_utils import kd_cfg


class _Payload:
    """Unpickling this writes a file: the proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def cfg(tmp_path):
    return kd_cfg(tmp_path)


def test_model_zoo_style_pkl_teacher_loads(cfg, tmp_path):
    state = torch.load(cfg.KD.TEACHER.WEIGHTS, weights_only=True)["model"]
    pkl = tmp_path / "teacher.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()},
                     "__author__": "test", "matching_heuristics": False}, f)
    cfg.KD.TEACHER.WEIGHTS = str(pkl)
    model = build_model(cfg)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_teacher_weights_with_a_code_payload_are_refused(cfg, tmp_path, suffix):
    proof = tmp_path / "pwned"
    bad = tmp_path / f"teacher{suffix}"
    with open(bad, "wb") as f:
        pickle.dump({"model": {}, "__author__": _Payload(str(proof))}, f)
    cfg.KD.TEACHER.WEIGHTS = str(bad)
    with pytest.raises(ValueError, match="KD.TEACHER.WEIGHTS"):
        build_model(cfg)
    assert not proof.exists()


def test_checkpointer_refuses_pkl_payload_naming_the_file(tmp_path):
    proof = tmp_path / "pwned"
    bad = tmp_path / "w.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"blobs": _Payload(str(proof))}, f)
    with pytest.raises(ValueError, match="w.pkl"):
        SafeDetectionCheckpointer(torch.nn.Linear(1, 1)).load(str(bad))
    assert not proof.exists()


def test_teacher_yaml_with_a_python_tag_is_refused(cfg, tmp_path):
    proof = tmp_path / "pwned"
    with open(cfg.KD.TEACHER.CONFIG_FILE) as f:
        text = f.read()
    evil = tmp_path / "evil.yaml"
    evil.write_text(text + f"\nX: !!python/object/apply:os.system ['touch {proof}']\n")
    cfg.KD.TEACHER.CONFIG_FILE = str(evil)
    with pytest.raises(ValueError, match="KD.TEACHER.CONFIG_FILE"):
        build_model(cfg)
    assert not proof.exists()


def test_exporter_refuses_a_checkpoint_with_a_payload(cfg, tmp_path):
    proof = tmp_path / "pwned"
    bad = tmp_path / "model_final.pth"
    torch.save({"model": {}, "extra": _Payload(str(proof))}, bad)
    assert not proof.exists()  # saving ran nothing either
    with pytest.raises(ValueError, match="model_final.pth"):
        export_student(cfg, str(bad), str(tmp_path / "out"))
    assert not proof.exists() and not os.path.exists(tmp_path / "out" / "student_final.pth")


def test_teacher_weights_with_nan_are_refused_naming_the_tensor(cfg, tmp_path):
    ckpt = torch.load(cfg.KD.TEACHER.WEIGHTS, weights_only=True)
    key = next(k for k in ckpt["model"] if k.endswith("box_predictor.cls_score.weight"))
    ckpt["model"][key][0, 0] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(ckpt, bad)
    cfg.KD.TEACHER.WEIGHTS = str(bad)
    with pytest.raises(ValueError, match="NaN or infinite values in .*cls_score.weight"):
        build_model(cfg)


def test_pretrained_detector_of_another_class_count_loads_without_its_head(cfg, tmp_path):
    from .detection_utils import tiny_rcnn_cfg

    other = build_model(tiny_rcnn_cfg(num_classes=7))
    path = tmp_path / "pretrained.pth"
    torch.save({"model": other.state_dict()}, path)
    model = build_model(cfg)
    SafeDetectionCheckpointer(model).load(str(path))
    s = model.student.state_dict()
    o = other.state_dict()
    assert torch.equal(s["backbone.fpn_lateral2.weight"], o["backbone.fpn_lateral2.weight"])
    assert s["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4  # 3 classes + bg, kept
