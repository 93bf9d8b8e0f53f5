"""DistillRCNN as a LazyConfig citizen: configs/builtin/kd.py builds the model that
configs/builtin/kd.yaml builds, and tools/lazyconfig_train_net.py trains, evaluates,
resumes and exports with kd_det's checks."""
import json
import os
import shutil
import sys

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import kd_det
from kd_det.engine.lazy_yaml import load_lazy_config
from kd_det.modeling import build_kd_terms, load_teacher

from ..detection_utils import fixed_batch, make_coco_dataset, write_teacher

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import lazyconfig_train_net  # noqa: E402


def _yacs(path, *opts):
    cfg = get_cfg()
    kd_det.add_kd_config(cfg)
    kd_det.add_mobilenet_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, path))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(scope="module")
def builtin_teacher(tmp_path_factory):
    """Weights for configs/builtin/teacher.yaml (random init: parity needs no training)."""
    cfg = _yacs("configs/builtin/teacher.yaml", "MODEL.MOBILENET.IMAGENET_WEIGHTS", "")
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("teacher") / "teacher.pth")
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def test_lazy_and_yacs_kd_models_are_the_same_model(builtin_teacher, one_thread, monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs name the teacher's config relative to the repo
    ycfg = _yacs("configs/builtin/kd.yaml", "KD.TEACHER.WEIGHTS", builtin_teacher)
    lcfg = LazyConfig.load(os.path.join(ROOT, "configs/builtin/kd.py"))
    lcfg.model.teacher.weights = builtin_teacher
    assert list(instantiate(lcfg.model.kd_terms)) == build_kd_terms(ycfg)

    torch.manual_seed(5)
    yacs_model = build_model(ycfg)
    torch.manual_seed(5)
    lazy_model = instantiate(lcfg.model)
    ys, ls = yacs_model.state_dict(), lazy_model.state_dict()
    assert sorted(ys) == sorted(ls) and any(k.startswith("adapters.") for k in ys)
    for k in ys:
        torch.testing.assert_close(ls[k], ys[k], rtol=0, atol=0, msg=k)

    batch = fixed_batch(n=2, size=96)
    losses = []
    for model in (yacs_model, lazy_model):
        model.train()
        torch.manual_seed(1)  # anchor and ROI sampling
        with EventStorage():
            losses.append({k: v.item() for k, v in model(batch).items()})
    assert set(losses[0]) >= {"loss_cls", "loss_rpn_kd_cls", "loss_roi_kd_reg", "loss_hint"}
    assert losses[1] == losses[0]


def test_lazy_teacher_is_loaded_strictly(builtin_teacher, tmp_path, one_thread, monkeypatch):
    monkeypatch.chdir(ROOT)
    teacher = load_teacher("configs/builtin/teacher.yaml", builtin_teacher)
    assert teacher.roi_heads.num_classes == 5
    # A LazyConfig teacher: the student's own .py config with weights of that model.
    lazy = LazyConfig.load("configs/builtin/student.py")
    path = str(tmp_path / "student.pth")
    torch.save({"model": instantiate(lazy.model).state_dict()}, path)
    assert load_teacher("configs/builtin/student.py", path).roi_heads.num_classes == 5
    with pytest.raises(ValueError, match="model.teacher.weights=.* does not match"):
        load_teacher("configs/builtin/student.py", builtin_teacher)
    with pytest.raises(FileNotFoundError, match="model.teacher.config_file='nope.py'"):
        load_teacher("nope.py", path)
    # a teacher of another class count needs a class map (model.teacher_class_map)
    lcfg = LazyConfig.load("configs/builtin/kd.py")
    lcfg.model.teacher.weights = builtin_teacher
    lcfg.model.student.roi_heads.num_classes = 3
    with pytest.raises(ValueError, match="teacher predicts 5 classes but the student 3"):
        instantiate(lcfg.model)
    lcfg.model.teacher_class_map = [4, 0, 2]
    assert instantiate(lcfg.model)._class_maps["teacher"].teacher_index == (4, 0, 2)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lazy_data")
    make_coco_dataset(str(tmp / "train"), "lazy_probe", n_images=4, seed=0)  # json + images
    make_coco_dataset(str(tmp / "val"), "lazy_probe_val", n_images=2, seed=1)
    teacher_cfg, teacher_w = write_teacher(str(tmp))
    return tmp, teacher_cfg, teacher_w


def _args(tmp, teacher_cfg, teacher_w, out, *opts, resume=False, eval_only=False,
          config="configs/builtin/kd.py"):
    data = ["--dataset-coco", "lz_train", str(tmp / "train" / "ann.json"), str(tmp / "train"),
            "--dataset-coco", "lz_val", str(tmp / "val" / "ann.json"), str(tmp / "val")]
    overrides = [
        f"model.teacher.config_file={teacher_cfg}", f"model.teacher.weights={teacher_w}",
        "model.student.roi_heads.num_classes=3",
        "dataloader.train.dataset.names=lz_train", "dataloader.test.dataset.names=lz_val",
        "dataloader.train.total_batch_size=2", "train.max_iter=4", "train.eval_period=2",
        "train.checkpointer.period=2", f"train.output_dir={out}",
        "lr_multiplier.scheduler.milestones=[3]", "lr_multiplier.scheduler.num_updates=4",
    ] if config.endswith("kd.py") else [f"train.output_dir={out}"]
    flags = (["--resume"] if resume else []) + (["--eval-only"] if eval_only else [])
    return lazyconfig_train_net.argument_parser().parse_args(
        ["--config-file", config, *data, *flags, *overrides, *opts])


def test_lazy_kd_run_trains_evaluates_resumes_and_exports(tiny_data, tmp_path, one_thread,
                                                          monkeypatch):
    monkeypatch.chdir(ROOT)
    tmp, teacher_cfg, teacher_w = tiny_data
    out = tmp_path / "run"
    lazyconfig_train_net.main(_args(tmp, teacher_cfg, teacher_w, str(out)))
    lines = [json.loads(x) for x in open(out / "metrics.json")]
    assert any("loss_hint" in x and "loss_roi_kd_cls" in x for x in lines)
    assert any(k.startswith("teacher/test/bbox/AP") for x in lines for k in x)
    curve = json.loads((out / "curve.json").read_text())
    assert [r["iter"] for r in curve] == [2, 4]
    ckpt = torch.load(out / "model_final.pth", weights_only=False)
    assert all(k.startswith(("student.", "adapters.")) for k in ckpt["model"])

    # The export is a LazyConfig of the student alone, in plain YAML as the run's saved
    # config.yaml is (both read by the safe loader); evaluating it gives the final AP.
    load_lazy_config(str(out / "config.yaml"))
    exported = load_lazy_config(str(out / "student_final.yaml"))
    assert exported.train.init_checkpoint == str(out / "student_final.pth")
    again = lazyconfig_train_net.main(_args(tmp, teacher_cfg, teacher_w, str(tmp_path / "ev"),
                                            eval_only=True,
                                            config=str(out / "student_final.yaml")))
    assert again["bbox"]["AP"] == pytest.approx(curve[-1]["bbox/AP"], nan_ok=True)

    # --resume goes on from the last checkpoint (iteration 1 done -> starts at 2).
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(out / "model_0000001.pth", part)
    (part / "last_checkpoint").write_text("model_0000001.pth")
    lazyconfig_train_net.main(_args(tmp, teacher_cfg, teacher_w, str(part), resume=True))
    assert "Starting training from iteration 2" in (part / "log.txt").read_text()
    assert min(json.loads(x)["iteration"] for x in open(part / "metrics.json")) >= 2
    assert not any(k.startswith("teacher/") for x in open(part / "metrics.json") for k in
                   json.loads(x))  # a resumed run does not re-evaluate the teacher


def test_lazy_bad_inputs_are_refused_before_training(tiny_data, tmp_path, one_thread,
                                                      monkeypatch):
    monkeypatch.chdir(ROOT)
    tmp, teacher_cfg, teacher_w = tiny_data
    five = write_teacher(str(tmp_path), num_classes=5)
    with pytest.raises(ValueError, match="dataloader.train.dataset.names: dataset 'lz_train' "
                                         "has 3 classes .*model.student.roi_heads.num_classes=5"):
        lazyconfig_train_net.main(_args(tmp, *five, str(tmp_path / "a"),
                                        "model.student.roi_heads.num_classes=5"))
    with pytest.raises(KeyError, match="dataloader.*names: dataset 'nope' is not registered"):
        lazyconfig_train_net.main(_args(tmp, teacher_cfg, teacher_w, str(tmp_path / "b"),
                                        "dataloader.train.dataset.names=nope"))
    with pytest.raises(FileNotFoundError, match="--dataset-coco"):
        args = _args(tmp, teacher_cfg, teacher_w, str(tmp_path / "c"))
        args.dataset_coco[0][1] = str(tmp / "missing.json")
        lazyconfig_train_net.main(args)
    assert not any((tmp_path / d / "metrics.json").exists() for d in "abc")
