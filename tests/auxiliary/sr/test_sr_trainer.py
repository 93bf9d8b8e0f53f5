"""SRTrainer on the shared engine: teacher, student and baseline modes, data, configs."""
import glob
import json
import os
import shutil

import pytest
import torch

from kd_det.auxiliary.sr import SRTrainer
from kd_det.auxiliary.sr.config import list_images, train_val_files
from kd_det.auxiliary.sr.data import SRPatchDataset, load_test_set, load_val_set
from kd_det.auxiliary.sr.trainer import evaluate_bicubic, loss_diagnostics
from kd_det.modeling.diagnostics import term_name

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")


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
    assert set(res) == {"val/psnr", "val/ssim", "tiny/psnr", "tiny/ssim", "curve"}
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
    assert again["val/psnr"] == pytest.approx(res["val/psnr"])
    assert os.path.isfile(os.path.join(out, "metrics.json"))


@pytest.mark.parametrize("key,value,match", [
    ("SR.MODE", "distill", "SR.MODE"),
    ("SR.DATA.PATCH_SIZE", 25, "SR.DATA.PATCH_SIZE"),
    ("SR.SCALE", 8, "SR.SCALE"),
    ("SR.KD.VID_FORM", "cauchy", "SR.KD.VID_FORM"),
    ("SR.DATA.TRAIN_DIR", "/nonexistent/sr", "SR.DATA.TRAIN_DIR"),
    ("SR.DATA.VAL_EVERY", 1, "SR.DATA.VAL_EVERY"),
    ("SR.DATA.VAL_CROP", 25, "SR.DATA.VAL_CROP"),
    ("SR.VAL_PERIOD", -1, "SR.VAL_PERIOD"),
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
    ds = SRPatchDataset(list_images(sr_images, "x"), scale=2, patch_size=24,
                        patches_per_image=3)
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
        SRPatchDataset(list_images(sr_images, "x"), scale=2, patch_size=64)


def test_validation_images_are_carved_out_of_training(sr_images, tmp_path):
    files = list_images(sr_images, "x")
    train, val = train_val_files(_cfg(sr_images, str(tmp_path), "baseline",
                                      "SR.DATA.VAL_EVERY", 2))
    assert val == files[::2] and train == files[1::2]
    # the trainer draws its patches from the training images only
    trainer = SRTrainer(_cfg(sr_images, str(tmp_path), "baseline", "SR.DATA.VAL_EVERY", 2))
    assert len(trainer._trainer.data_loader.dataset.images) == 2
    train, val = train_val_files(_cfg(sr_images, str(tmp_path), "baseline",
                                      "SR.DATA.VAL_EVERY", 0))
    assert (train, val) == (files, [])
    with pytest.raises(ValueError, match="leaves no training image"):
        SRTrainer(_cfg(sr_images, str(tmp_path), "baseline", "SR.DATA.VAL_EVERY", 4,
                       "SR.DATA.TRAIN_DIR", str(_one_image(sr_images, tmp_path))))


def _one_image(sr_images, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(list_images(sr_images, "x")[0], folder)
    return folder


def test_validation_crops_are_centred_squares(sr_images):
    files = list_images(sr_images, "x")[:2]          # 40 x 46 images
    crops = load_val_set(files, scale=2, crop=24)
    assert [c["hr"].shape for c in crops] == [(1, 24, 24)] * 2
    assert crops[0]["lr"].shape == (1, 12, 12) and crops[0]["bicubic"].shape == (1, 24, 24)
    whole = load_val_set(files, scale=2, crop=0)[0]["hr"]
    assert whole.shape == (1, 40, 40)
    assert torch.equal(crops[0]["hr"], whole[:, 8:32, 8:32])  # the centre of the 40x46 image
    assert load_val_set(files, scale=3, crop=300)[0]["hr"].shape == (1, 39, 39)


def test_validation_curve_points_and_resume(sr_images, tmp_path):
    out = str(tmp_path / "curve")
    res = SRTrainer.run(_cfg(sr_images, out, "baseline", "SR.VAL_PERIOD", 2,
                             "SOLVER.MAX_ITER", 5, "SOLVER.CHECKPOINT_PERIOD", 2))
    curve = res["curve"]
    assert [p["iter"] for p in curve] == [0, 2, 4, 5]   # start, every 2, the end
    assert curve[-1]["val/psnr"] == pytest.approx(res["val/psnr"])
    assert set(curve[0]) == {"iter", "val/psnr", "term/rec", "grad_norm/rec"}
    with open(os.path.join(out, "val_curve.json")) as f:
        assert json.load(f) == curve
    # resumed from the checkpoint after 4 iterations: earlier points kept, none repeated
    os.remove(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write("model_0000003.pth")
    again = SRTrainer.run(_cfg(sr_images, out, "baseline", "SR.VAL_PERIOD", 2,
                               "SOLVER.MAX_ITER", 5, "SOLVER.CHECKPOINT_PERIOD", 2),
                          resume=True)
    assert [p["iter"] for p in again["curve"]] == [0, 2, 4, 5]
    assert again["curve"][:3] == curve[:3]
    # no validation split: no curve, whatever SR.VAL_PERIOD says
    plain_out = tmp_path / "plain"
    plain = SRTrainer.run(_cfg(sr_images, str(plain_out), "baseline", "SR.DATA.VAL_EVERY", 0,
                               "SR.VAL_PERIOD", 2))
    assert set(plain) == {"tiny/psnr", "tiny/ssim"}
    assert not (plain_out / "val_curve.json").exists()


def test_loss_diagnostics_are_the_gradient_norms_on_the_sr_network(sr_images, tmp_path):
    teacher_out = str(tmp_path / "teacher")
    SRTrainer.run(_cfg(sr_images, teacher_out, "teacher", "SR.DATA.VAL_EVERY", 0))
    cfg = _cfg(sr_images, str(tmp_path / "s"), "student", "SR.KD.VID_WEIGHT", 0.5,
               "SR.KD.TEACHER_WEIGHTS", os.path.join(teacher_out, "model_final.pth"))
    model = SRTrainer.build_model(cfg)
    images = load_val_set(list_images(sr_images, "x")[:2], 2, 16)
    diag = loss_diagnostics(model, images)
    batch = {"lr": torch.stack([im["lr"] for im in images]),
             "hr": torch.stack([im["hr"] for im in images])}
    losses = model(batch)        # equal-size crops: the batch mean is the mean over images
    for name, loss in losses.items():
        assert diag[f"term/{term_name(name)}"] == pytest.approx(float(loss), rel=1e-5)
        grads = torch.autograd.grad(loss, list(model.student.parameters()),
                                    retain_graph=True, allow_unused=True)
        norm = sum(float(g.pow(2).sum()) for g in grads if g is not None) ** 0.5
        assert diag[f"grad_norm/{term_name(name)}"] == pytest.approx(norm, rel=1e-4)
    assert diag["grad_norm/vid"] > 0
    assert all(p.grad is None for p in model.parameters())
