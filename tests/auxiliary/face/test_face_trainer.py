"""FaceTrainer on the shared engine: data layout and split, teacher / student / KD runs on a
small synthetic Olivetti-format file, the frozen teacher, bad input, and the real file
(skipped when ../shared/data is absent)."""
import json
import os

import numpy as np
import pytest
import scipy.io
import torch

from kd_det.auxiliary.face import FaceTrainer
from kd_det.auxiliary.face.data import FaceBatches, load_olivetti, load_split
from kd_det.auxiliary.face.distiller import gradient_diagnostics
from kd_det.auxiliary.face.models import FaceNet
from kd_det.data import LRDegradation

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "face")
PROBES = ["original", "30px", "20px", "16px", "12px", "8px"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(olivetti_mat, out, config="student.yaml", iters=4, *extra):
    opts = ["FACE.DATA.PATH", olivetti_mat, "FACE.NUM_IDENTITIES", 4, "OUTPUT_DIR", str(out),
            "FACE.MODEL.WIDTHS", (4, 8), "FACE.TEACHER.WIDTHS", (4, 8), "FACE.EMBED_DIM", 8,
            "DATALOADER.BATCH_SIZE", 8, "SOLVER.MAX_ITER", iters, "SOLVER.WARMUP_ITERS", 0,
            "SOLVER.LOG_PERIOD", 2]
    return FaceTrainer.setup_cfg(os.path.join(CONFIGS, config), opts + list(extra))


@pytest.fixture(scope="module")
def teacher_weights(olivetti_mat, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    FaceTrainer.run(_cfg(olivetti_mat, out, "teacher.yaml", 6, "FACE.TEST.VAL_PERIOD", 3))
    return os.path.join(out, "model_final.pth")


def test_olivetti_layout_is_read_column_major(olivetti_mat):
    images, labels = load_olivetti(olivetti_mat)
    assert images.shape == (40, 1, 64, 64) and labels.tolist() == [i // 10 for i in range(40)]
    raw = scipy.io.loadmat(olivetti_mat)["faces"]
    assert torch.equal(images[13, 0] * 255, torch.from_numpy(
        raw[:, 13].reshape(64, 64, order="F").astype(np.float32)))
    # identity 1's square is at rows 8..32, columns 32..56 (not transposed)
    assert images[10, 0, 8:32, 32:56].mean() > 0.7 and images[10, 0, 32:56, 8:32].mean() < 0.3


def test_split_is_identity_stratified_fixed_and_disjoint(olivetti_mat, tmp_path):
    cfg = _cfg(olivetti_mat, tmp_path)
    splits = {name: load_split(cfg, name) for name in ("train", "val", "test")}
    for name, per_identity in (("train", 5), ("val", 2), ("test", 3)):
        assert torch.bincount(splits[name].tensors[1]).tolist() == [per_identity] * 4
    flat = torch.cat([d.tensors[0] for d in splits.values()]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 40
    test = splits["test"].tensors[0]
    assert torch.equal(load_split(cfg, "test").tensors[0], test)
    other = _cfg(olivetti_mat, tmp_path, "student.yaml", 4, "FACE.DATA.SPLIT_SEED", 1)
    assert not torch.equal(load_split(other, "test").tensors[0], test)
    # the validation faces come out of the training ones; the test faces stay the same
    no_val = _cfg(olivetti_mat, tmp_path, "student.yaml", 4, "FACE.DATA.VAL_PER_IDENTITY", 0)
    assert torch.equal(load_split(no_val, "test").tensors[0], test)
    def rows(*sets):
        return torch.unique(torch.cat([d.tensors[0] for d in sets]).flatten(1), dim=0)

    assert torch.equal(rows(splits["val"], splits["train"]), rows(load_split(no_val, "train")))
    with pytest.raises(ValueError, match="no 'val' split"):
        load_split(no_val, "val")
    too_many = _cfg(olivetti_mat, tmp_path, "student.yaml", 4, "FACE.DATA.VAL_PER_IDENTITY", 7)
    with pytest.raises(ValueError, match="VAL_PER_IDENTITY=7"):
        load_split(too_many, "train")


def test_batches_flip_and_degrade_deterministically(olivetti_mat, tmp_path):
    loader = [load_split(_cfg(olivetti_mat, tmp_path), "train")[:16]]

    def batches(seed):
        return next(iter(FaceBatches(loader, seed, True, LRDegradation(prob=0.5))))

    a, b = batches(0), batches(0)
    assert all(torch.equal(a[k], b[k]) for k in ("hr", "image", "label"))
    faces = loader[0][0]
    flipped = [not torch.equal(h, f) for h, f in zip(a["hr"], faces)]
    assert all(torch.equal(h, f.flip(-1)) for h, f, fl in zip(a["hr"], faces, flipped) if fl)
    assert 0 < sum(flipped) < 16
    degraded = sum(not torch.equal(i, h) for i, h in zip(a["image"], a["hr"]))
    assert 0 < degraded < 16
    assert not torch.equal(batches(1)["image"], a["image"])


def test_teacher_trains_and_reports_rank1_per_probe_on_test_and_val(teacher_weights):
    out = os.path.dirname(teacher_weights)
    saved = json.load(open(os.path.join(out, "results.json")))
    assert list(saved["results"]) == ([f"rank1/{p}" for p in PROBES]
                                      + [f"val/rank1/{p}" for p in PROBES])
    assert all(0.0 <= v <= 100.0 for v in saved["results"].values())
    assert "ENABLED: false" in saved["config"]


def test_val_period_writes_the_validation_curve(teacher_weights):
    out = os.path.dirname(teacher_weights)
    curve = json.load(open(os.path.join(out, "curve.json")))
    assert [p["iter"] for p in curve] == [3, 6]
    final = json.load(open(os.path.join(out, "results.json")))["results"]
    assert {k: v for k, v in curve[-1].items() if k.startswith("val/")} == \
        {k: v for k, v in final.items() if k.startswith("val/")}
    metrics = [json.loads(x) for x in open(os.path.join(out, "metrics.json"))]
    assert [m["iteration"] for m in metrics if "val/rank1/8px" in m] == [2, 6]


def test_val_period_needs_validation_faces(olivetti_mat, tmp_path):
    with pytest.raises(ValueError, match="FACE.TEST.VAL_PERIOD needs validation faces"):
        FaceTrainer(_cfg(olivetti_mat, tmp_path, "student.yaml", 4, "FACE.TEST.VAL_PERIOD", 2,
                         "FACE.DATA.VAL_PER_IDENTITY", 0))


def test_gradient_diagnostics_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    losses = {"loss_cls": 3 * w[0], "loss_a": -w[0] + w[1], "loss_b": 2 * (w ** 2).sum()}
    d = gradient_diagnostics(losses, [w], "loss_cls")  # gradients (3, 0), (-1, 1), (4, 8)
    assert d["grad_norm/cls"] == pytest.approx(3.0)
    assert d["grad_ratio/a"] == pytest.approx(2 ** 0.5 / 3)
    assert d["grad_cos/a"] == pytest.approx(-(2 ** -0.5))
    assert d["grad_ratio/b"] == pytest.approx(80 ** 0.5 / 3)
    assert d["grad_cos/b"] == pytest.approx(4 / 80 ** 0.5)
    assert "grad_ratio/cls" not in d


@pytest.mark.parametrize("feature_loss", ["mmd", "l2"])
def test_kd_keeps_teacher_fixed_and_out_of_checkpoints(olivetti_mat, tmp_path, teacher_weights,
                                                       feature_loss):
    cfg = _cfg(olivetti_mat, tmp_path, f"kd_{feature_loss}.yaml", 4,
               "FACE.TEACHER.WEIGHTS", teacher_weights, "FACE.KD.DIAGNOSTICS_PERIOD", 2)
    trainer = FaceTrainer(cfg)
    model = trainer.model
    before = model.teacher_params_snapshot()
    student_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    saved = torch.load(teacher_weights)["model"]
    assert torch.equal(before["teacher.head.weight"], saved["student.head.weight"])
    trainer.train()
    after = model.teacher_params_snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in model.teachers["teacher"].parameters())
    assert not torch.equal(student_before["head.weight"], model.student.head.weight)
    final = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))["model"]
    assert final and all(k.startswith("student.") for k in final)
    metrics = [json.loads(x) for x in open(os.path.join(cfg.OUTPUT_DIR, "metrics.json"))]
    assert any(f"loss_{feature_loss}" in m and "loss_kd" in m for m in metrics)
    # FACE.KD.DIAGNOSTICS_PERIOD 2: the terms against CE at iterations 0 and 2
    diag = [m for m in metrics if f"kd_diag/grad_ratio/{feature_loss}" in m]
    assert [m["iteration"] for m in diag] == [0, 2]
    for key in ("term/cls", f"term/{feature_loss}", "grad_norm/cls",
                "grad_cos/kd", "teacher_acc/own_input", "teacher_acc/student_input"):
        assert all(f"kd_diag/{key}" in m for m in diag)
    assert all(0 <= m["kd_diag/teacher_acc/student_input"] <= 100 for m in diag)


def test_eval_only_reproduces_the_final_evaluation(olivetti_mat, teacher_weights):
    out = os.path.dirname(teacher_weights)
    cfg = _cfg(olivetti_mat, out, "teacher.yaml", 6, "MODEL.WEIGHTS", teacher_weights)
    saved = json.load(open(os.path.join(out, "results.json")))["results"]
    assert FaceTrainer.run(cfg, eval_only=True) == pytest.approx(saved)


def test_bad_input_is_refused_before_training(olivetti_mat, tmp_path, teacher_weights):
    def kd(*extra):
        return _cfg(olivetti_mat, tmp_path, "kd_mmd.yaml", 4, *extra)

    with pytest.raises(FileNotFoundError, match="FACE.TEACHER.WEIGHTS"):
        FaceTrainer(kd("FACE.TEACHER.WEIGHTS", str(tmp_path / "missing.pth")))
    with pytest.raises(ValueError, match="needs FACE.TEACHER.WEIGHTS"):
        FaceTrainer(kd("FACE.TEACHER.WEIGHTS", ""))
    wrong = str(tmp_path / "five.pth")
    net = FaceNet("resnet", (4, 8), 8, num_identities=5)
    torch.save({"model": torch.nn.ModuleDict({"student": net}).state_dict()}, wrong)
    with pytest.raises(ValueError, match="5 identities but FACE.NUM_IDENTITIES=4"):
        FaceTrainer(kd("FACE.TEACHER.WEIGHTS", wrong))
    with pytest.raises(ValueError, match="FACE.TEACHER.WEIGHTS.*wrong shapes"):
        FaceTrainer(kd("FACE.TEACHER.WEIGHTS", teacher_weights, "FACE.TEACHER.WIDTHS", (4, 16)))
    with pytest.raises(FileNotFoundError, match="FACE.DATA.PATH"):
        FaceTrainer(_cfg(olivetti_mat, tmp_path, "student.yaml", 4,
                         "FACE.DATA.PATH", str(tmp_path / "none.mat")))
    with pytest.raises(ValueError, match="holds 4 identities but FACE.NUM_IDENTITIES=40"):
        FaceTrainer(_cfg(olivetti_mat, tmp_path, "student.yaml", 4, "FACE.NUM_IDENTITIES", 40))
    with pytest.raises(ValueError, match="FACE.KD.FEATURE_LOSS"):
        FaceTrainer(kd("FACE.TEACHER.WEIGHTS", teacher_weights, "FACE.KD.FEATURE_LOSS", "cos"))


def test_shipped_configs_parse():
    methods = {}
    for name in ("teacher", "teacher_lr", "student", "kd_l2", "kd_mmd", "kd_mmd_lr_teacher"):
        f = FaceTrainer.setup_cfg(os.path.join(CONFIGS, f"{name}.yaml")).FACE
        methods[name] = (f.METHOD, f.LR.ENABLED, f.KD.FEATURE_LOSS, f.KD.TEACHER_INPUT)
        assert (f.DATA.TEST_PER_IDENTITY, f.DATA.VAL_PER_IDENTITY, f.TEST.VAL_PERIOD) == (3, 2, 100)
        assert f.KD.DIAGNOSTICS_PERIOD == (100 if f.METHOD == "kd" else 0)
    assert methods["teacher"][:2] == ("none", False)
    assert methods["teacher_lr"][:2] == ("none", True)
    assert methods["student"][:2] == ("none", True)
    assert methods["kd_l2"] == ("kd", True, "l2", "hr")
    assert methods["kd_mmd"] == ("kd", True, "mmd", "hr")
    assert methods["kd_mmd_lr_teacher"] == ("kd", True, "mmd", "lr")


def test_real_olivetti_file(shared_data):
    path = os.path.join(shared_data, "olivetti", "olivettifaces.mat")
    if not os.path.isfile(path):
        pytest.skip(f"{path} is absent")
    images, labels = load_olivetti(path)
    assert images.shape == (400, 1, 64, 64) and int(labels.max()) == 39
    # upright faces: the mean face is left-right symmetric, not top-bottom symmetric
    mean = images.mean(0)[0]
    assert (mean - mean.flip(1)).abs().mean() < 0.5 * (mean - mean.flip(0)).abs().mean()
    cfg = FaceTrainer.setup_cfg(os.path.join(CONFIGS, "student.yaml"), ["FACE.DATA.PATH", path])
    assert [len(load_split(cfg, split)) for split in ("train", "val", "test")] == [200, 80, 120]


@pytest.mark.parametrize("content", ["truncated", "text", "empty"])
def test_unreadable_mat_is_refused_naming_the_file(olivetti_mat, tmp_path, content):
    data = open(olivetti_mat, "rb").read()
    bad = tmp_path / f"{content}.mat"
    bad.write_bytes({"truncated": data[:len(data) // 2], "empty": b"",
                     "text": b"not a MATLAB file\n" * 3}[content])
    cfg = _cfg(olivetti_mat, tmp_path / "out", "student.yaml", 4, "FACE.DATA.PATH", str(bad))
    with pytest.raises(ValueError, match=f"FACE.DATA.PATH='{bad}' is not a readable Olivetti"):
        FaceTrainer(cfg)
    assert not (tmp_path / "out").exists()
