"""tools/train_net.py end to end on a tiny COCO-json dataset: train, evaluate, export,
eval-only, exact resume, and refusals before training."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase
from detectron2.modeling import build_model

from kd_det.engine import KDTrainer

from ..detection_utils import kd_cfg, make_coco_dataset, short_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import train_net  # noqa: E402


@pytest.fixture(scope="module")
def kd_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    make_coco_dataset(str(tmp / "train"), "kd_test_train", n_images=6, seed=0)
    make_coco_dataset(str(tmp / "val"), "kd_test_val", n_images=3, seed=1)
    cfg = kd_cfg(str(tmp))
    short_run(cfg, ["kd_test_train"], ["kd_test_val"])
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.SEED = 3
    path = str(tmp / "kd.yaml")
    with open(path, "w") as f:
        f.write(cfg.dump())
    return path


def _args(config, out, *opts, eval_only=False, resume=False):
    return train_net.argument_parser().parse_args(
        ["--config-file", config] + (["--eval-only"] if eval_only else [])
        + (["--resume"] if resume else []) + ["OUTPUT_DIR", str(out), *map(str, opts)])


def test_train_evaluate_export_and_eval_only(kd_config, tmp_path):
    out = tmp_path / "run"
    results = train_net.main(_args(kd_config, out))
    assert "AP" in results["bbox"]  # one test set: Detectron2 returns its results unwrapped
    lines = [json.loads(x) for x in open(out / "metrics.json")]
    assert any("loss_roi_kd_cls" in x and "loss_hint" in x for x in lines)
    assert any(k.startswith("teacher/kd_test_val/bbox/AP") for x in lines for k in x)
    log = (out / "log.txt").read_text()  # kd_det's own lines reach log.txt
    assert "Loaded teacher weights" in log and "Exported the student" in log
    ckpt = torch.load(out / "model_final.pth", weights_only=False)
    assert all(k.startswith(("student.", "adapters.")) for k in ckpt["model"])
    assert (out / "student_final.pth").is_file() and (out / "student_final.yaml").is_file()
    again = train_net.main(_args(kd_config, tmp_path / "eval", "MODEL.WEIGHTS",
                                 out / "model_final.pth", eval_only=True))
    assert again["bbox"] == pytest.approx(results["bbox"], nan_ok=True)
    # The exported student loads into vanilla Detectron2, without kd_det, with identical
    # predictions.
    cfg = train_net.setup(_args(kd_config, tmp_path / "p"))
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(str(out / "model_final.pth"))
    img = torch.randint(0, 255, (3, 96, 96), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model([{"image": img.float(), "height": 96, "width": 96}])[0]["instances"]
    torch.save(img, tmp_path / "img.pt")
    code = f"""
import sys, torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.checkpoint import DetectionCheckpointer
cfg = get_cfg(); cfg.merge_from_file({str(out / 'student_final.yaml')!r})
m = build_model(cfg).eval()
DetectionCheckpointer(m).load(cfg.MODEL.WEIGHTS)
img = torch.load({str(tmp_path / 'img.pt')!r})
with torch.no_grad():
    r = m([{{"image": img.float(), "height": 96, "width": 96}}])[0]["instances"]
torch.save({{"boxes": r.pred_boxes.tensor, "scores": r.scores}}, {str(tmp_path / 'v.pt')!r})
assert "kd_det" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(tmp_path))
    vanilla = torch.load(tmp_path / "v.pt")
    torch.testing.assert_close(vanilla["boxes"], ours.pred_boxes.tensor)
    torch.testing.assert_close(vanilla["scores"], ours.scores)


class _LossRecorder(HookBase):
    def __init__(self):
        self.losses = {}

    def after_step(self):
        hist = self.trainer.storage.history("total_loss")
        self.losses[self.trainer.iter] = hist.latest()


def _run(cfg, resume=False):
    trainer = KDTrainer(cfg)
    rec = _LossRecorder()
    trainer.register_hooks([rec])
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return rec.losses


def test_resume_continues_exactly(kd_config, tmp_path):
    cfg = train_net.setup(_args(kd_config, tmp_path / "full", "KD.TEACHER.EVAL_BEFORE_TRAIN",
                                False, "SOLVER.MAX_ITER", 5))
    full = _run(cfg)
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(tmp_path / "full" / "model_0000001.pth", part)
    (part / "last_checkpoint").write_text("model_0000001.pth")
    cfg2 = cfg.clone()
    cfg2.defrost()
    cfg2.OUTPUT_DIR = str(part)
    resumed = _run(cfg2, resume=True)
    assert sorted(resumed) == [2, 3, 4]
    for it in resumed:
        assert resumed[it] == pytest.approx(full[it], rel=1e-6, abs=1e-7), (it, resumed, full)


def test_unknown_dataset_is_refused_before_training(kd_config, tmp_path):
    with pytest.raises(KeyError, match="DATASETS.TRAIN: dataset 'nope' is not registered"):
        train_net.main(_args(kd_config, tmp_path, "DATASETS.TRAIN", "('nope',)"))
    assert not (tmp_path / "metrics.json").exists()


def test_missing_teacher_file_is_refused_before_training(kd_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="KD.TEACHER.WEIGHTS"):
        train_net.main(_args(kd_config, tmp_path, "KD.TEACHER.WEIGHTS", "/no/such/file.pth"))
    assert not (tmp_path / "metrics.json").exists()


def test_periodic_evaluation_writes_a_learning_curve(kd_config, tmp_path):
    out = tmp_path / "curve"
    train_net.main(_args(kd_config, out, "TEST.EVAL_PERIOD", 2, "KD.TEACHER.EVAL_BEFORE_TRAIN",
                         False))
    curve = json.loads((out / "curve.json").read_text())
    assert [r["iter"] for r in curve] == [2, 4]
    assert 0 < curve[0]["seconds"] < curve[1]["seconds"]
    assert all("bbox/AP50" in r and "bbox/AP" in r for r in curve)


@pytest.mark.parametrize("split", ["TEST", "TRAIN"])
def test_dataset_classes_that_do_not_fit_the_model_are_refused(tmp_path, split):
    from ..detection_utils import tiny_rcnn_cfg

    make_coco_dataset(str(tmp_path / "d"), "kd_test_3cls", n_images=2, seed=0)
    cfg = short_run(tiny_rcnn_cfg(num_classes=2), ["kd_test_3cls"], ["kd_test_3cls"])
    if split == "TRAIN":
        cfg.DATASETS.TEST = ()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    with pytest.raises(ValueError, match=f"DATASETS.{split}: dataset 'kd_test_3cls' has 3 "
                                         "classes .* MODEL.ROI_HEADS.NUM_CLASSES=2"):
        KDTrainer(cfg)


def test_teacher_of_other_class_names_is_refused(kd_config, tmp_path):
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import kd_det

    if "kd_test_teacher_data" not in DatasetCatalog.list():
        DatasetCatalog.register("kd_test_teacher_data", list)
        MetadataCatalog.get("kd_test_teacher_data").thing_classes = ["x", "y", "z"]
    cfg = get_cfg()
    kd_det.add_kd_config(cfg)
    cfg.merge_from_file(kd_config)
    tcfg = get_cfg()
    kd_det.add_kd_config(tcfg)
    tcfg.merge_from_file(cfg.KD.TEACHER.CONFIG_FILE)
    tcfg.DATASETS.TRAIN = ("kd_test_teacher_data",)
    path = tmp_path / "teacher.yaml"
    path.write_text(tcfg.dump())
    cfg.KD.TEACHER.CONFIG_FILE = str(path)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    with pytest.raises(ValueError, match="teacher .* trained on 'kd_test_teacher_data'"):
        KDTrainer(cfg)


def test_a_wider_teacher_is_evaluated_before_training_in_the_students_classes(
        kd_config, tmp_path):
    """The teacher AP logged before the first step scores a 4-class teacher on the
    3-class student's test set through its class map, not with its own class ids."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import inference_context

    from kd_det.benchmarks.detection import load_cfg
    from kd_det.modeling.class_map import InStudentClasses

    if "kd_test_wide_data" not in DatasetCatalog.list():
        DatasetCatalog.register("kd_test_wide_data", list)
        MetadataCatalog.get("kd_test_wide_data").thing_classes = ["c2", "x", "c0", "c1"]
    cfg = load_cfg(kd_config)
    wide = kd_cfg(str(tmp_path), num_classes=4)
    tcfg = load_cfg(wide.KD.TEACHER.CONFIG_FILE, ["DATASETS.TRAIN", "('kd_test_wide_data',)"])
    (tmp_path / "wide.yaml").write_text(tcfg.dump())
    cfg.KD.TEACHER.CONFIG_FILE = str(tmp_path / "wide.yaml")
    cfg.KD.TEACHER.WEIGHTS = wide.KD.TEACHER.WEIGHTS
    cfg.KD.TEACHER.CLASS_MAP = [2, 3, 0]  # student c0, c1, c2
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    trainer = KDTrainer(cfg)
    (hook,) = [h for h in trainer._hooks if type(h).__name__ == "TeacherEvalHook"]
    teacher = hook._teachers["teacher"]
    assert isinstance(teacher, InStudentClasses)
    assert teacher._to_student.tolist() == [2, -1, 0, 1]
    # An evaluation restores the mode it found: the frozen teacher stays in eval mode.
    with inference_context(teacher):
        pass
    assert not trainer.model.teacher.training and not teacher.training


class _CrashAtLastStep(HookBase):
    def before_step(self):
        if self.trainer.iter + 1 == self.trainer.max_iter:
            raise RuntimeError("crash on the last step")


def test_a_run_that_fails_on_its_last_step_exports_nothing(kd_config, tmp_path):
    out = tmp_path / "run"
    train_net.main(_args(kd_config, out, "KD.TEACHER.EVAL_BEFORE_TRAIN", False))
    assert (out / "model_final.pth").is_file()
    (out / "student_final.pth").unlink()  # an older model_final.pth stays in the folder
    cfg = train_net.setup(_args(kd_config, out, "KD.TEACHER.EVAL_BEFORE_TRAIN", False,
                                "SOLVER.BASE_LR", 0.05))
    trainer = KDTrainer(cfg)
    trainer.register_hooks([_CrashAtLastStep()])
    trainer.resume_or_load(resume=False)
    with pytest.raises(RuntimeError, match="last step"):
        trainer.train()
    assert not (out / "student_final.pth").exists()


def test_export_refuses_a_config_that_does_not_fit_the_weights(kd_config, tmp_path):
    from kd_det.engine import export_student

    cfg = train_net.setup(_args(kd_config, tmp_path / "x"))
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": build_model(cfg).state_dict()}, ckpt)
    out = export_student(cfg, str(ckpt), str(tmp_path / "ok"))
    assert os.path.isfile(out["weights"])
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_student(cfg, str(ckpt), str(tmp_path / "ok"), overwrite=False)
    wrong = cfg.clone()
    wrong.defrost()
    wrong.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    with pytest.raises(ValueError, match="does not match the student of the given config"):
        export_student(wrong, str(ckpt), str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")


def test_datasets_from_the_command_line_train_and_evaluate(kd_config, tmp_path):
    """A user's COCO json (train) and VOC folder (test) registered by arguments alone."""
    import cv2
    import numpy as np

    from ..detection_utils import make_coco_dataset

    make_coco_dataset(str(tmp_path / "coco"), "kd_tmp_unused", n_images=4, seed=2)
    voc = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(voc / sub)
    for i in range(2):
        img = np.full((96, 96, 3), 30, np.uint8)
        img[10:50, 8:40] = (80, 255, 120)
        cv2.imwrite(str(voc / "JPEGImages" / f"im{i}.jpg"), img)
        (voc / "Annotations" / f"im{i}.xml").write_text(
            "<annotation><size><width>96</width><height>96</height></size><object><name>c0"
            "</name><pose>x</pose><truncated>0</truncated>{}<bndbox><xmin>9</xmin><ymin>11"
            "</ymin><xmax>40</xmax><ymax>50</ymax></bndbox></object></annotation>".format(
                "<difficult>0</difficult>" if i else ""))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("im0\nim1\n")
    argv = ["--config-file", kd_config,
            "--dataset-coco", "cli_train", str(tmp_path / "coco" / "ann.json"),
            str(tmp_path / "coco"),
            "--dataset-voc", "cli_test", str(voc), "test", "c0,c1,c2",
            "OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.TRAIN", '("cli_train",)',
            "DATASETS.TEST", '("cli_test",)', "KD.TEACHER.EVAL_BEFORE_TRAIN", "False"]
    # im0 lacks <difficult>: Detectron2's VOC evaluator would fail after training.
    with pytest.raises(ValueError, match="im0.xml cannot be scored .*<difficult>"):
        train_net.main(train_net.argument_parser().parse_args(argv))
    from detectron2.evaluation.pascal_voc_evaluation import parse_rec

    parse_rec.cache_clear()
    xml = voc / "Annotations" / "im0.xml"
    xml.write_text(xml.read_text().replace("<truncated>0</truncated>",
                                           "<truncated>0</truncated><difficult>0</difficult>"))
    results = train_net.main(train_net.argument_parser().parse_args(argv))
    assert "AP50" in results["bbox"]
    bad = argv[:2] + ["--dataset-coco", "cli_bad", str(tmp_path / "nope.json"),
                      str(tmp_path / "coco")] + argv[6:]
    with pytest.raises(FileNotFoundError, match="--dataset-coco cli_bad: JSON .*nope.json"):
        train_net.main(train_net.argument_parser().parse_args(bad))
