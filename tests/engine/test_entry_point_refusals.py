"""tools/train_net.py and tools/lazyconfig_train_net.py refuse the same bad data, names and
resumes before the first step, and KD.DATA_CHECK drop trains without the bad images of a
--dataset-coco or --dataset-voc set, listing them."""
import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model

from ..data.test_bad_inputs import truncate
from ..detection_utils import kd_cfg, make_coco_dataset, short_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import lazyconfig_train_net  # noqa: E402
import train_net  # noqa: E402

BAD = ("001", "002", "003")  # missing, not an image, truncated


def _make_voc(root, n_images=6):
    """A VOC folder of noise JPEGs with one c0..c2 box each (ImageSets/Main/train.txt)."""
    rng = np.random.RandomState(0)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub))
    for i in range(n_images):
        cv2.imwrite(os.path.join(root, "JPEGImages", f"{i:03d}.jpg"),
                    rng.randint(0, 255, (96, 96, 3), np.uint8))
        with open(os.path.join(root, "Annotations", f"{i:03d}.xml"), "w") as f:
            f.write(f"<annotation><size><width>96</width><height>96</height></size><object>"
                    f"<name>c{i % 3}</name><bndbox><xmin>10</xmin><ymin>12</ymin><xmax>50"
                    "</xmax><ymax>60</ymax></bndbox></object></annotation>")
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
        f.write("".join(f"{i:03d}\n" for i in range(n_images)))
    return os.path.join(root, "JPEGImages"), ".jpg"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Clean COCO sets, a COCO and a VOC training set with three bad images each, and a
    KD config (yacs) and teacher for both tools."""
    tmp = tmp_path_factory.mktemp("refusals")
    make_coco_dataset(str(tmp / "val"), "kd_test_ep_src", n_images=2, seed=1)
    sets = {"coco": ["--dataset-coco", "ep_train", str(tmp / "coco" / "ann.json"),
                     str(tmp / "coco")],
            "voc": ["--dataset-voc", "ep_train_voc", str(tmp / "voc"), "train", "c0,c1,c2"]}
    make_coco_dataset(str(tmp / "coco"), "kd_test_ep_src", n_images=6, seed=0)
    for folder, ext in ((str(tmp / "coco"), ".png"), _make_voc(str(tmp / "voc"))):
        os.remove(os.path.join(folder, BAD[0] + ext))
        open(os.path.join(folder, BAD[1] + ext), "w").write("not an image")
        truncate(os.path.join(folder, BAD[2] + ext))
    cfg = kd_cfg(str(tmp))
    short_run(cfg, [], [], iters=2)
    cfg.KD.TEACHER.EVAL_BEFORE_TRAIN = False
    with open(tmp / "kd.yaml", "w") as f:
        f.write(cfg.dump())
    val = ["--dataset-coco", "ep_val", str(tmp / "val" / "ann.json"), str(tmp / "val")]
    return tmp, sets, val


def _yacs(setup, out, data, *opts, resume=False):
    tmp, _, _ = setup
    name = data[1]
    return train_net.main(train_net.argument_parser().parse_args(
        ["--config-file", str(tmp / "kd.yaml"), *data] + (["--resume"] if resume else [])
        + ["OUTPUT_DIR", str(out), "DATASETS.TRAIN", f"('{name}',)", *map(str, opts)]))


def _lazy(setup, out, data, *opts, resume=False, drop=False):
    tmp, _, val = setup
    name = data[1]
    check = [f"dataloader.train.dataset.data_check={'drop' if drop else 'error'}",
             f"dataloader.train.dataset.output_dir={out}"]
    return lazyconfig_train_net.main(lazyconfig_train_net.argument_parser().parse_args(
        ["--config-file", "configs/builtin/kd.py", *data, *([] if data == val else val)]
        + (["--resume"] if resume else [])
        + [f"model.teacher.config_file={tmp / 'teacher_3_0.yaml'}",
           f"model.teacher.weights={tmp / 'teacher_3_0.pth'}",
           "model.student.roi_heads.num_classes=3", f"dataloader.train.dataset.names={name}",
           "dataloader.test.dataset.names=ep_val", "dataloader.train.total_batch_size=2",
           "train.max_iter=2", "train.eval_period=0", "+train.eval_teacher_before_train=False",
           f"train.output_dir={out}", "lr_multiplier.scheduler.milestones=[1]",
           "lr_multiplier.scheduler.num_updates=2", *check, *opts]))


TOOLS = {"train_net": _yacs, "lazyconfig_train_net": _lazy}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("kind", ["coco", "voc"])
def test_bad_images_are_refused_or_dropped_and_listed(setup, tmp_path, monkeypatch, one_thread,
                                                      tool, kind):
    monkeypatch.chdir(ROOT)
    _, sets, _ = setup
    data = sets[kind]
    with pytest.raises(ValueError, match=f"{data[1]}.*{BAD[0]}\\.(png|jpg): the image file is "
                                         "missing.*KD.DATA_CHECK 'drop'"):
        TOOLS[tool](setup, tmp_path / "error", data)
    assert not (tmp_path / "error" / "metrics.json").exists()
    out = tmp_path / "drop"
    if tool == "train_net":
        _yacs(setup, out, data, "KD.DATA_CHECK", "drop")
    else:
        _lazy(setup, out, data, drop=True)
    listed = json.loads((out / f"preflight_{data[1]}.json").read_text())
    assert sorted(os.path.basename(x["file_name"])[:3] for x in listed["dropped"]) == list(BAD)
    assert (out / "model_final.pth").is_file()  # trained on the other three


@pytest.mark.parametrize("tool", TOOLS)
def test_taken_dataset_name_is_refused_and_its_replacement_logged(setup, tmp_path, monkeypatch,
                                                                  tool):
    """The teacher's training set here is coco_2017_train (Base-RCNN-FPN.yaml)."""
    monkeypatch.chdir(ROOT)
    tmp, _, _ = setup
    taken = ["--dataset-coco", "bccd_train", str(tmp / "val" / "ann.json"), str(tmp / "val")]
    with pytest.raises(ValueError, match="Dataset name 'bccd_train' is taken .*BCCD.*"
                                         "--replace-datasets"):
        TOOLS[tool](setup, tmp_path / "a", taken)
    try:
        with pytest.raises(Exception) as err:  # the other classes are refused by the model
            TOOLS[tool](setup, tmp_path / "b", taken + ["--replace-datasets"],
                        *(["MODEL.ROI_HEADS.NUM_CLASSES", "7"] if tool == "train_net" else
                          ["model.student.roi_heads.num_classes=7"]))
        assert os.path.exists(tmp_path / "b" / "log.txt"), repr(err.value)
        log = (tmp_path / "b" / "log.txt").read_text()
        assert "Dataset 'bccd_train' (VOC folder" in log and "is replaced" in log
    finally:
        from kd_det.data import register_all

        register_all()


def test_teacher_training_set_replaced_by_other_classes_is_refused(setup, tmp_path):
    """Replacing the teacher's training-set name with data of other classes keeps the class
    check against the classes the teacher was trained on."""
    from detectron2.config import get_cfg

    import kd_det
    from kd_det.data import register_all

    tmp, _, _ = setup
    tcfg = get_cfg()
    kd_det.add_kd_config(tcfg)
    tcfg.merge_from_file(str(tmp / "teacher_3_0.yaml"))
    tcfg.DATASETS.TRAIN = ("bccd_train",)  # BCCD's RBC, WBC, Platelets
    (tmp_path / "teacher.yaml").write_text(tcfg.dump())
    data = ["--dataset-coco", "bccd_train", str(tmp / "val" / "ann.json"), str(tmp / "val"),
            "--replace-datasets"]  # classes c0, c1, c2
    try:
        with pytest.raises(ValueError, match="'bccd_train' has classes \\['c0', 'c1', 'c2'\\] "
                                             "but the teacher .* \\['RBC', 'WBC', 'Platelets'"):
            _yacs(setup, tmp_path / "out", data, "KD.TEACHER.CONFIG_FILE",
                  str(tmp_path / "teacher.yaml"))
    finally:
        register_all()


@pytest.mark.parametrize("tool", TOOLS)
def test_resume_of_a_checkpoint_of_other_shapes_is_refused(setup, tmp_path, monkeypatch, tool):
    """A config whose box head is narrower than the checkpoint's: refused naming the
    tensors, not resumed with a random head into a crash at the first step."""
    monkeypatch.chdir(ROOT)
    tmp, _, val = setup
    out = tmp_path / "run"
    out.mkdir()
    if tool == "train_net":
        cfg = kd_cfg(tmp_path)
        cfg.merge_from_file(str(tmp / "kd.yaml"))
        model, narrower = build_model(cfg), ["MODEL.ROI_BOX_HEAD.FC_DIM", 32]
        tensor = "student.roi_heads.box_head.fc1.weight: checkpoint \\(64, 1568\\), model \\(32"
    else:
        lazy = LazyConfig.load("configs/builtin/kd.py")
        lazy.model.teacher.config_file = str(tmp / "teacher_3_0.yaml")
        lazy.model.teacher.weights = str(tmp / "teacher_3_0.pth")
        lazy.model.student.roi_heads.num_classes = 3
        model = instantiate(lazy.model)
        narrower = ["model.student.roi_heads.box_head.fc_dims=[256,128]"]
        tensor = "student.roi_heads.box_head.fc2.weight: checkpoint \\(256, 256\\), model \\(128"
    torch.save({"model": model.state_dict(), "iteration": 1}, out / "model_0000001.pth")
    (out / "last_checkpoint").write_text("model_0000001.pth")
    with pytest.raises(ValueError, match=f"--resume: .*model_0000001.pth was written by a model "
                                         f"of other shapes .*{tensor}"):
        TOOLS[tool](setup, out, val, *narrower, resume=True)
    metrics = out / "metrics.json"
    assert not metrics.exists() or not metrics.read_text()  # no step ran


# Each bad term setting: (yacs key, value), (LazyConfig override), the message's words.
TERM_PROBES = [
    (("KD.HINT.WEIGHT", -1.0), "model.kd_terms.hint.weight=-1.0",
     r"KD.HINT.WEIGHT \(LazyConfig: model.kd_terms.hint.weight\) must be a finite number "
     r"in \[0, 10000\], got -1.0"),
    (("KD.ROI.MU", 1.5), "model.kd_terms.roi_soft_label.mu=1.5",
     r"KD.ROI.MU \(LazyConfig: model.kd_terms.roi_soft_label.mu\) must be a finite number "
     r"in \[0, 1\], got 1.5"),
    (("KD.ROI.REG_MODE", "bounde"), "model.kd_terms.roi_bounded_regression.mode=bounde",
     r"KD.ROI.REG_MODE \(LazyConfig: model.kd_terms.roi_bounded_regression.mode\) must be "
     r"one of \('bounded', 'l2'\), got 'bounde'"),
    (("KD.RPN.TEMPERATURE", 0.0), "model.kd_terms.rpn_soft_label.temperature=0",
     r"KD.RPN.TEMPERATURE \(LazyConfig: model.kd_terms.rpn_soft_label.temperature\) must be "
     r"a finite number in \[0.01, 100\], got 0"),
    (("KD.HINT.WEIGHT", "abc"), "model.kd_terms.hint.weight=abc",
     r"KD.HINT.WEIGHT \(LazyConfig: model.kd_terms.hint.weight\) must be a finite number "
     r".*got 'abc'"),
    (("KD.HINT.LOSS", "pdk"), "model.kd_terms.hint.loss=pdk",
     r"KD.HINT.LOSS \(LazyConfig: model.kd_terms.hint.loss\) must be one of \('mse', 'pkd'\)"),
]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("yacs,lazy,message", TERM_PROBES)
def test_bad_term_settings_are_refused_alike_before_step_1(setup, tmp_path, monkeypatch, tool,
                                                           yacs, lazy, message):
    """The terms check their own settings when built, so both tools refuse a bad one with
    the same words, before any step."""
    monkeypatch.chdir(ROOT)
    _, _, val = setup
    opts = yacs if tool == "train_net" else [lazy]
    if tool == "train_net" and yacs[1] == "abc":  # yacs itself refuses it, when merging
        message = r"Type mismatch .* for config key: KD.HINT.WEIGHT"
    with pytest.raises(ValueError, match=message):
        TOOLS[tool](setup, tmp_path, val, *opts)
    assert not (tmp_path / "metrics.json").exists()


def test_mode_none_means_off_in_yacs_and_is_refused_in_a_lazyconfig(setup, tmp_path,
                                                                   monkeypatch):
    """yacs' REG_MODE none turns the regression term off; in a LazyConfig the term is left
    out (=None), and mode='none' is refused saying so rather than training plain L2."""
    from kd_det.modeling.kd_terms import ROIBoundedRegression, build_kd_terms

    from ..detection_utils import active_terms

    tmp, _, val = setup
    cfg = kd_cfg(str(tmp_path))
    cfg.KD.ROI.REG_MODE = "none"
    assert "loss_roi_kd_reg" not in active_terms(cfg) and build_kd_terms(cfg)
    with pytest.raises(ValueError, match=r"model.kd_terms.roi_bounded_regression=None"):
        ROIBoundedRegression(mode="none")
    monkeypatch.chdir(ROOT)
    with pytest.raises(ValueError, match="mode.*must be one of .*=None"):
        _lazy(setup, tmp_path, val, "model.kd_terms.roi_bounded_regression.mode=none")
