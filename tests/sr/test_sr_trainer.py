"""SRTrainer on the shared engine: teacher, student and baseline modes, data, configs."""
import glob
import os

import pytest
import torch

from kd_det.sr import SRTrainer
from kd_det.sr.data import SRPatchDataset, load_test_set
from kd_det.sr.trainer import evaluate_bicubic

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(sr_images, out, mode, *extra):
    opts = [
        "SR.MODE", mode, "SR.SCALE", 2, "OUTPUT_DIR", out,
        "SR.DATA.TRAIN_DIR", sr_images, "SR.DATA.TEST_DIRS", (sr_images,),
        "SR.DATA.TEST_NAMES", ("tiny",), "SR.DATA.PATCH_SIZE", 24,
        "SR.DATA.PATCHES_PER_IMAGE", 2, "SR.TEACHER.ENCODER_WIDTH", 8,
        "DATALOADER.BATCH_SIZE", 2, "SOLVER.MAX_ITER", 4, "SOLVER.LOG_PERIOD", 2,
    ]
    return SRTrainer.setup_cfg(os.path.join(ROOT, "configs", "sr", "Base-SR.yaml"),
                               opts + list(extra))


def test_teacher_then_student_keeps_teacher_fixed(sr_images, tmp_path):
    teacher_out = str(tmp_path / "teacher")
    res = SRTrainer.run(_cfg(sr_images, teacher_out, "teacher"))
    assert set(res) == {"tiny/psnr", "tiny/ssim"}
    weights = os.path.join(teacher_out, "model_final.pth")

    cfg = _cfg(sr_images, str(tmp_path / "student"), "student",
               "SR.KD.TEACHER_WEIGHTS", weights, "SR.KD.VID_WEIGHT", 1.0)
    trainer = SRTrainer(cfg)
    model = trainer.model
    teacher = model.teachers["teacher"]
    saved = torch.load(weights, map_location="cpu")["model"]
    # the teacher really is the trained one, and the student starts as its decoder
    assert all(torch.equal(saved[k], v) for k, v in teacher.state_dict().items())
    dec = teacher.decoder.state_dict()
    assert all(torch.equal(dec[k], v) for k, v in model.student.state_dict().items())
    before = model.teacher_params_snapshot()
    student_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    trainer.train()
    after = model.teacher_params_snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(student_before[k], v)
               for k, v in model.student.state_dict().items())
    assert all(not k.startswith("teacher") for k in model.state_dict())


def test_baseline_trains_and_eval_only_reloads_it(sr_images, tmp_path):
    out = str(tmp_path / "base")
    res = SRTrainer.run(_cfg(sr_images, out, "baseline"))
    again = SRTrainer.run(_cfg(sr_images, out, "baseline", "MODEL.WEIGHTS",
                        os.path.join(out, "model_final.pth")), eval_only=True)
    assert again["tiny/psnr"] == pytest.approx(res["tiny/psnr"])
    assert os.path.isfile(os.path.join(out, "metrics.json"))


@pytest.mark.parametrize("key,value,match", [
    ("SR.MODE", "distill", "SR.MODE"),
    ("SR.DATA.PATCH_SIZE", 25, "SR.DATA.PATCH_SIZE"),
    ("SR.SCALE", 8, "SR.SCALE"),
    ("SR.KD.VID_FORM", "cauchy", "SR.KD.VID_FORM"),
    ("SR.DATA.TRAIN_DIR", "/nonexistent/sr", "SR.DATA.TRAIN_DIR"),
])
def test_bad_keys_fail_before_training(sr_images, tmp_path, key, value, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        SRTrainer(_cfg(sr_images, str(tmp_path / "x"), "baseline", key, value))


def test_student_needs_a_matching_teacher(sr_images, tmp_path):
    with pytest.raises(ValueError, match="SR.KD.TEACHER_WEIGHTS"):
        SRTrainer(_cfg(sr_images, str(tmp_path / "s"), "student"))
    base_out = str(tmp_path / "base")
    SRTrainer.run(_cfg(sr_images, base_out, "baseline", "SOLVER.MAX_ITER", 1))
    with pytest.raises(ValueError, match="SR.KD.TEACHER_WEIGHTS.*missing keys"):
        SRTrainer(_cfg(sr_images, str(tmp_path / "s"), "student", "SR.KD.TEACHER_WEIGHTS",
                       os.path.join(base_out, "model_final.pth")))


def test_patches_are_aligned_flipped_and_seeded(sr_images):
    ds = SRPatchDataset(sr_images, scale=2, patch_size=24, patches_per_image=3)
    assert len(ds) == 12
    torch.manual_seed(0)
    a = ds[5]
    torch.manual_seed(0)
    b = ds[5]
    assert a["hr"].shape == (1, 24, 24) and a["lr"].shape == (1, 12, 12)
    assert torch.equal(a["hr"], b["hr"])
    # LR is the bicubic downscale of HR: close to HR averaged over 2x2 blocks
    pooled = torch.nn.functional.avg_pool2d(a["hr"][None], 2)[0]
    assert (pooled - a["lr"]).abs().mean() < 0.02
    assert 16 / 255 - 1e-6 <= float(a["hr"].min()) and float(a["hr"].max()) <= 235 / 255 + 1e-6


def test_all_sr_configs_parse():
    files = sorted(glob.glob(os.path.join(ROOT, "configs", "sr", "*.yaml")))
    assert len(files) >= 10
    for f in files:
        cfg = SRTrainer.setup_cfg(f)
        assert cfg.SOLVER.OPTIMIZER == "ADAM" and cfg.SR.SCALE in (2, 3, 4)


def test_real_test_sets_and_bicubic_reference(shared_data):
    sr_dir = os.path.join(shared_data, "sr")
    images = load_test_set(os.path.join(sr_dir, "CSet5"), scale=3)
    assert len(images) == 5
    for im in images:
        assert im["hr"].shape[-1] == 3 * im["lr"].shape[-1] == im["bicubic"].shape[-1]
    cfg = SRTrainer.setup_cfg("", ["SR.SCALE", 2,
                                   "SR.DATA.TRAIN_DIR", os.path.join(sr_dir, "CSet5"),
                                   "SR.DATA.TEST_DIRS", (os.path.join(sr_dir, "CSet5"),)])
    # the published bicubic x2 PSNR on Set5 (MATLAB imresize) is 33.66 dB
    assert evaluate_bicubic(cfg)["Set5/psnr"] == pytest.approx(33.66, abs=0.1)


def test_train_dir_images_smaller_than_patch_are_refused(sr_images):
    with pytest.raises(ValueError, match="smaller than SR.DATA.PATCH_SIZE"):
        SRPatchDataset(sr_images, scale=2, patch_size=64)
