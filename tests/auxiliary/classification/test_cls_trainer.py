"""ClsTrainer end to end on a small slice of Fashion-MNIST: every method trains, teachers stay
frozen, FitNets' stage 1 touches only the guided part, the curves and gradient norms leave
training unchanged, a continued run starts from the student's weights, bad input is refused
up front."""
import dataclasses
import gzip
import json
import os
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.engine import HookBase

from kd_det.auxiliary.classification import CLS_METHOD_REGISTRY, ClsMethod, ClsTrainer
from kd_det.auxiliary.classification.data import load_split, read_idx
from kd_det.auxiliary.classification.models import ClassifierNet

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "classification")

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(tmp_path, method="none", iters=30, **kw):
    cfg = ClsTrainer.get_default_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / method)
    cfg.CLS.METHOD = method
    cfg.CLS.DATA.VAL_SIZE, cfg.CLS.DATA.TRAIN_SIZE, cfg.CLS.DATA.TEST_SIZE = 256, 1024, 1000
    cfg.CLS.TEACHER.WIDTHS = (8, 16, 16)
    cfg.DATALOADER.BATCH_SIZE = 32
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.LOG_PERIOD = iters, 0, 10
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.merge_from_list([x for k, v in kw.items() for x in (k, v)])
    return cfg


def _teacher_ckpt(tmp_path, num_classes=10, name="t.pth", seed=0):
    torch.manual_seed(seed)
    net = ClassifierNet("resnet", (8, 16, 16), num_classes)
    path = str(tmp_path / name)
    torch.save({"model": torch.nn.ModuleDict({"student": net}).state_dict()}, path)
    return path


def test_student_learns_and_reports_top1(tmp_path, fashion_mnist):
    res = ClsTrainer.run(_cfg(tmp_path, iters=80))
    assert set(res) == {"val/top1", "test/top1"}
    assert res["test/top1"] > 50.0  # 10 classes: chance is 10%
    saved = json.load(open(tmp_path / "none" / "results.json"))
    assert saved["results"] == res and "METHOD: none" in saved["config"]


@pytest.mark.parametrize("method, extra", [
    ("kd", {}), ("fnkd", {}), ("fnkd", {"CLS.FNKD.FORM": "paper"}), ("meal_v2", {})])
def test_teachers_never_change_and_student_trains(tmp_path, fashion_mnist, method, extra):
    weights = [_teacher_ckpt(tmp_path)]
    if method == "meal_v2":
        weights.append(_teacher_ckpt(tmp_path, name="t1.pth", seed=1))
        extra["CLS.MEAL.DISC_HIDDEN"] = "(8, 4)"
    cfg = _cfg(tmp_path, method, iters=12, **extra)
    cfg.CLS.TEACHER.WEIGHTS = tuple(weights)
    trainer = ClsTrainer(cfg)
    model = trainer.model
    before = model.teacher_params_snapshot()
    assert len(model.teachers) == len(weights)
    assert torch.equal(before["teacher0.fc.weight"],
                       torch.load(weights[0])["model"]["student.fc.weight"])
    assert not any(k.startswith("teacher") for k in model.state_dict())
    student0 = {k: v.clone() for k, v in model.student.state_dict().items()}
    res = trainer.train()
    after = model.teacher_params_snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(student0["fc.weight"], model.student.fc.weight)
    assert 0.0 <= res["test/top1"] <= 100.0
    losses = [json.loads(x) for x in open(os.path.join(cfg.OUTPUT_DIR, "metrics.json"))]
    keys = {"kd": "loss_kd", "fnkd": "loss_fnkd", "meal_v2": "loss_disc"}
    assert any(keys[method] in x for x in losses)
    if method == "meal_v2":
        lrs = sorted(g["initial_lr"] for g in trainer.optimizer.param_groups)
        assert lrs == [cfg.CLS.MEAL.DISC_LR, cfg.SOLVER.BASE_LR]
        assert "loss_cls" not in losses[-1]


def test_fitnets_stage1_trains_only_guided_part_then_kd(tmp_path, fashion_mnist):
    cfg = _cfg(tmp_path, "fitnets", iters=14,
               **{"CLS.FITNETS.STAGE1_ITERS": 8, "SOLVER.LOG_PERIOD": 1})
    cfg.CLS.TEACHER.WIDTHS = (8, 16, 16)
    cfg.CLS.TEACHER.WEIGHTS = (_teacher_ckpt(tmp_path),)
    trainer = ClsTrainer(cfg)
    s = trainer.model.student
    init = {k: v.clone() for k, v in s.state_dict().items()}
    at_stage_end = {}

    class Snapshot(HookBase):
        def after_step(self):
            if self.trainer.iter == 7:  # last stage-1 iteration
                at_stage_end.update({k: v.clone() for k, v in s.state_dict().items()})

    trainer.register_hooks([Snapshot()])
    trainer.train()
    assert not torch.equal(init["stages.1.0.0.weight"], at_stage_end["stages.1.0.0.weight"])
    for k in ("stages.2.0.0.weight", "fc.weight"):
        assert torch.equal(init[k], at_stage_end[k])  # beyond the guided stage: untouched
        assert not torch.equal(init[k], s.state_dict()[k])  # stage 2 trains them
    lines = [json.loads(x) for x in open(os.path.join(cfg.OUTPUT_DIR, "metrics.json"))]
    # Stage 1 has one loss, which Detectron2 logs as total_loss only.
    hint = [x["iteration"] for x in lines if "total_loss" in x and "loss_kd" not in x]
    kd = [x["iteration"] for x in lines if "loss_kd" in x]
    assert hint == list(range(8)) and kd == list(range(8, 14))


def test_curve_period_logs_val_and_grad_norms_without_changing_training(tmp_path,
                                                                       fashion_mnist):
    weights = (_teacher_ckpt(tmp_path),)
    finals = {}
    for period in (0, 4):
        cfg = _cfg(tmp_path, "kd", iters=10, **{"CLS.CURVE_PERIOD": period,
                                                "SOLVER.LOG_PERIOD": 2,
                                                "OUTPUT_DIR": str(tmp_path / f"p{period}")})
        cfg.CLS.TEACHER.WEIGHTS = weights
        trainer = ClsTrainer(cfg)
        trainer.train()
        finals[period] = trainer.model.student.state_dict()
    assert all(torch.equal(finals[0][k], finals[4][k]) for k in finals[0])
    lines = [json.loads(x) for x in open(tmp_path / "p4" / "metrics.json")]
    val = {x["iteration"]: x["val/top1"] for x in lines if "val/top1" in x}
    assert sorted(val) == [3, 7, 10]  # after 4 and 8 iterations, then the final evaluation
    norms = [x for x in lines if "grad_norm/kd" in x]
    assert [x["iteration"] for x in norms] == [3, 7]
    assert all(x["grad_norm/kd"] > 0 and x["grad_norm/cls"] > 0 for x in norms)
    off = [json.loads(x) for x in open(tmp_path / "p0" / "metrics.json")]
    assert [x["iteration"] for x in off if "val/top1" in x] == [10]
    assert not any("grad_norm/kd" in x for x in off)


def test_continued_run_starts_from_the_students_weights(tmp_path, fashion_mnist):
    ClsTrainer.run(_cfg(tmp_path, iters=4))
    student = str(tmp_path / "none" / "model_final.pth")
    cfg = _cfg(tmp_path, "meal_v2", iters=4, **{"CLS.MEAL.DISC_HIDDEN": "(8, 4)",
                                                 "MODEL.WEIGHTS": student})
    cfg.CLS.TEACHER.WEIGHTS = (_teacher_ckpt(tmp_path), _teacher_ckpt(tmp_path, name="t1.pth"))
    trainer = ClsTrainer(cfg)
    trainer.resume_or_load(resume=False)
    saved = torch.load(student)["model"]
    assert all(torch.equal(v, saved[f"student.{k}"])
               for k, v in trainer.model.student.state_dict().items())
    assert trainer.start_iter == 0


def test_bad_input_is_refused_before_training(tmp_path, fashion_mnist):
    cfg = _cfg(tmp_path, "kd")
    cfg.CLS.TEACHER.WEIGHTS = (str(tmp_path / "missing.pth"),)
    with pytest.raises(FileNotFoundError, match="CLS.TEACHER.WEIGHTS"):
        ClsTrainer(cfg)
    cfg.CLS.TEACHER.WEIGHTS = (_teacher_ckpt(tmp_path, num_classes=5),)
    with pytest.raises(ValueError, match="5 classes but CLS.NUM_CLASSES=10"):
        ClsTrainer(cfg)
    cfg.CLS.TEACHER.WEIGHTS = (_teacher_ckpt(tmp_path),)
    cfg.CLS.TEACHER.WIDTHS = (8, 16, 32)
    with pytest.raises(ValueError, match="CLS.TEACHER.WEIGHTS.*wrong shapes"):
        ClsTrainer(cfg)
    cfg = _cfg(tmp_path, "none", **{"CLS.DATA.ROOT": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        ClsTrainer(cfg)


@pytest.mark.parametrize("opts, message", [
    ({"CLS.METHOD": "meal_v2", "CLS.TEACHER.WEIGHTS": "('a.pth',)"}, "K >= 2 teachers"),
    ({"CLS.METHOD": "meal_v2", "CLS.TEACHER.WEIGHTS": "('a.pth', 'b.pth')"},
     "CLS.MEAL.DISC_HIDDEN"),
    ({"CLS.METHOD": "kd"}, "exactly one teacher"),
    ({"CLS.METHOD": "fitnets", "CLS.TEACHER.WEIGHTS": "('a.pth',)",
      "CLS.FITNETS.STAGE1_ITERS": "30"}, "STAGE1_ITERS"),
    ({"CLS.METHOD": "fitnets", "CLS.TEACHER.WEIGHTS": "('a.pth',)",
      "CLS.FITNETS.STAGE1_ITERS": "10", "CLS.FITNETS.HINT_STAGE": "2"}, "HINT_STAGE"),
    ({"CLS.METHOD": "fnkd", "CLS.TEACHER.WEIGHTS": "('a.pth',)", "CLS.FNKD.FORM": "xx"},
     "CLS.FNKD.FORM"),
    ({"CLS.TEACHER.WEIGHTS": "('a.pth',)"}, "CLS.METHOD is 'none' \\(no teacher\\)"),
    ({"CLS.METHOD": "dkd"}, "CLS.METHOD"),
    ({"CLS.DATA.VAL_SIZE": "50000", "CLS.DATA.TRAIN_SIZE": "20000"}, "60,000"),
    ({"CLS.CURVE_PERIOD": "-1"}, "CLS.CURVE_PERIOD"),
    ({"CLS.CURVE_PERIOD": "5", "CLS.DATA.VAL_SIZE": "0"}, "CLS.CURVE_PERIOD.*VAL_SIZE"),
])
def test_config_errors_name_the_key(tmp_path, fashion_mnist, opts, message):
    with pytest.raises(ValueError, match=message):
        ClsTrainer(_cfg(tmp_path, **opts))


def test_shipped_configs_parse():
    cfgs = {name: ClsTrainer.setup_cfg(os.path.join(CONFIGS, f"{name}.yaml"))
            for name in ("student", "teacher", "kd", "fitnets", "fnkd", "continued_ce",
                         "meal_v2")}
    for name, cfg in cfgs.items():
        assert cfg.CLS.METHOD == {"student": "none", "teacher": "none",
                                  "continued_ce": "none"}.get(name, name)
    assert cfgs["fnkd"].CLS.FNKD.FORM == "official"
    assert len(cfgs["meal_v2"].CLS.TEACHER.WEIGHTS) == 2
    # Every method trains on the student's schedule (FitNets' hint stage inside it); MEAL V2
    # on exactly its control's continuation, from the student alone.
    for name in ("kd", "fitnets", "fnkd"):
        assert cfgs[name].SOLVER == cfgs["student"].SOLVER
    assert cfgs["meal_v2"].SOLVER == cfgs["continued_ce"].SOLVER
    assert cfgs["meal_v2"].MODEL.WEIGHTS == cfgs["continued_ce"].MODEL.WEIGHTS
    assert cfgs["continued_ce"].MODEL.WEIGHTS.startswith(cfgs["student"].OUTPUT_DIR)


def test_read_idx_and_seeded_disjoint_split(tmp_path, fashion_mnist):
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(raw)
    assert read_idx(str(path)).tolist() == [[[1, 2, 3]], [[4, 5, 6]]]
    cfg = _cfg(tmp_path)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    assert len(train) == 1024 and len(val) == 256
    assert len(load_split(cfg, "test")) == 1000
    tr = {tuple(x.flatten()[::7].tolist()) for x in train.tensors[0]}
    assert not tr & {tuple(x.flatten()[::7].tolist()) for x in val.tensors[0]}
    assert torch.equal(load_split(cfg, "val").tensors[1], val.tensors[1])


@pytest.fixture
def logit_l2():
    """A method added the one way there is: one registered class (its loss: MSE between
    the logits), removed from the registry afterwards."""

    @CLS_METHOD_REGISTRY.register()
    @dataclasses.dataclass(frozen=True)
    class LogitL2(ClsMethod):
        name: ClassVar[str] = "logit_l2"

        @classmethod
        def from_config(cls, cfg):
            return cls()

        def __call__(self, model, x, y):
            s, t = model.student(x), model.teacher_outputs(x)[0]["logits"]
            return {"loss_cls": F.cross_entropy(s, y), "loss_logit_l2": F.mse_loss(s, t)}

    yield "logit_l2"
    CLS_METHOD_REGISTRY._obj_map.pop("LogitL2")


def test_a_registered_method_trains_without_touching_the_distiller(tmp_path, fashion_mnist,
                                                                   logit_l2):
    cfg = _cfg(tmp_path, logit_l2, iters=4)
    cfg.CLS.TEACHER.WEIGHTS = (_teacher_ckpt(tmp_path),)
    ClsTrainer.run(cfg)
    lines = [json.loads(x) for x in open(os.path.join(cfg.OUTPUT_DIR, "metrics.json"))]
    assert any("loss_logit_l2" in x for x in lines)
    assert "logit_l2" in [m.name for _, m in CLS_METHOD_REGISTRY]


def _write_idx_gz(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _tiny_fashion_mnist(root, test_labels):
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, labels in (("train", np.arange(40) % 10), ("t10k", np.array(test_labels))):
        _write_idx_gz(root / f"{split}-images-idx3-ubyte.gz",
                      rng.integers(0, 255, (len(labels), 28, 28)))
        _write_idx_gz(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return str(root)


def test_truncated_gz_and_out_of_range_test_label_are_refused_naming_the_file(tmp_path):
    """Both before the first step: the test labels are read when the trainer is built,
    not scored as misses after the last step."""
    sizes = {"CLS.DATA.VAL_SIZE": 8, "CLS.DATA.TRAIN_SIZE": 32, "CLS.DATA.TEST_SIZE": 0}
    root = _tiny_fashion_mnist(tmp_path / "labels", [0, 1, 12, 3])
    cfg = _cfg(tmp_path, **{"CLS.DATA.ROOT": root, **sizes})
    with pytest.raises(ValueError, match=f"{root}/t10k-labels-idx1-ubyte.gz: label 12 .*"
                                         r"outside 0..9 \(CLS.NUM_CLASSES=10\)"):
        ClsTrainer(cfg)
    root = _tiny_fashion_mnist(tmp_path / "truncated", [0, 1, 2, 3])
    images = os.path.join(root, "train-images-idx3-ubyte.gz")
    data = open(images, "rb").read()
    open(images, "wb").write(data[:len(data) // 2])
    cfg = _cfg(tmp_path, **{"CLS.DATA.ROOT": root, **sizes})
    with pytest.raises(ValueError, match=f"{images} cannot be read .*truncated or corrupt"):
        ClsTrainer(cfg)
    assert not os.path.exists(cfg.OUTPUT_DIR)
