"""Deploying a tiny trained DistillRCNN student (MobileNetV2-FPN, half the teacher's
resolution): TorchScript and ONNX exports that match eager, load in a process where kd_det
and Detectron2 cannot be imported, evaluate through tools/train_net.py, and refusals that
leave nothing behind."""
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.data import build_detection_train_loader
from detectron2.export import scripting_with_instances
from detectron2.modeling import build_backbone, build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from kd_det import add_mobilenet_config
from kd_det.deploy import (
    DEPLOY_EXTRA,
    detection_differences,
    export_deployable,
    load_exported,
)
from kd_det.deploy.images import image_files, load_model_input
from kd_det.engine import student_config

from ..detection_utils import ROOT, kd_cfg, make_coco_dataset, short_run

sys.path.insert(0, os.path.join(ROOT, "tools"))
import export_student  # noqa: E402
import train_net  # noqa: E402

try:
    import onnxruntime  # noqa: F401
    HAVE_ORT = True
except ImportError:
    HAVE_ORT = False
needs_ort = pytest.mark.skipif(not HAVE_ORT,
                               reason=f"onnxruntime is not installed ({DEPLOY_EXTRA})")
FORMATS = ["torchscript", pytest.param("onnx", marks=needs_ort)]
SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}


def _mobilenet_student(cfg):
    add_mobilenet_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_mobilenetv2_fpn_backbone"
    cfg.MODEL.MOBILENET.IMAGENET_WEIGHTS = ""
    cfg.MODEL.MOBILENET.NORM = "BN"
    cfg.MODEL.MOBILENET.FREEZE_AT = 0
    cfg.MODEL.FPN.IN_FEATURES = ["m2", "m3", "m4", "m5"]
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    cfg.INPUT.FORMAT = "RGB"
    return cfg


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny convolutions on two shared cores stall with two threads (see conftest)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DistillRCNN checkpoint after 40 steps (about 5 s: AP50 above 10 on its training
    images), its config file and the test images."""
    tmp = tmp_path_factory.mktemp("deploy")
    make_coco_dataset(str(tmp / "train"), "kd_deploy_train", n_images=4, size=128, seed=0)
    make_coco_dataset(str(tmp / "val"), "kd_deploy_val", n_images=3, size=128, seed=1)
    cfg = _mobilenet_student(kd_cfg(str(tmp)))
    cfg.KD.STUDENT.INPUT_SCALE = 0.5
    cfg.KD.HINT.STUDENT_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.KD.HINT.TEACHER_FEATURES = ["p3", "p4", "p5", "p6"]
    short_run(cfg, ["kd_deploy_train"], ["kd_deploy_val"], size=128, iters=40)
    torch.manual_seed(0)
    model = build_model(cfg)
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02)
    data = iter(build_detection_train_loader(cfg))
    with EventStorage():
        for _ in range(cfg.SOLVER.MAX_ITER):
            loss = sum(model(next(data)).values())
            optim.zero_grad()
            loss.backward()
            optim.step()
    weights, config = str(tmp / "model_final.pth"), str(tmp / "kd.yaml")
    torch.save({"model": model.state_dict()}, weights)
    with open(config, "w") as f:
        f.write(cfg.dump())
    return {"cfg": cfg, "weights": weights, "config": config, "tmp": tmp,
            "images": image_files(["kd_deploy_val"])}


def _files(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _eager(trained, image):
    from kd_det.deploy import deployable_model
    from kd_det.deploy.tracing import boxes_scores_classes

    model, _ = deployable_model(trained["cfg"], trained["weights"])
    with torch.no_grad():
        return boxes_scores_classes(model, [{"image": image}])


def test_the_backbone_scripts_and_the_detector_scripts_with_instances(trained):
    cfg = student_config(trained["cfg"])
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    x = torch.randn(1, 3, 64, 96)
    scripted = torch.jit.script(backbone)
    for k, v in backbone(x).items():
        torch.testing.assert_close(scripted(x)[k], v)
    model = build_model(cfg).eval()
    fields = {"proposal_boxes": Boxes, "objectness_logits": torch.Tensor,
              "pred_boxes": Boxes, "scores": torch.Tensor, "pred_classes": torch.Tensor}
    image = load_model_input(trained["images"][0], cfg)[0]
    with torch.no_grad():
        ours = scripting_with_instances(model, fields).inference(
            [{"image": image}], do_postprocess=False)[0]
        ref = model.inference([{"image": image}], do_postprocess=False)[0]
    torch.testing.assert_close(ours.pred_boxes.tensor, ref.pred_boxes.tensor)


_FRESH = """
import sys
for name in ("kd_det", "detectron2"):
    sys.modules[name] = None  # importing either now raises ImportError
import torch
fmt, path, images, out = sys.argv[1:]
if fmt == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    run = lambda im: [torch.from_numpy(x) for x in session.run(None, {"image": im.numpy()})]
else:
    import torchvision  # the graph calls torchvision::nms and roi_align
    model = torch.jit.load(path)
    run = lambda im: list(model(im))
try:
    import kd_det
    sys.exit("kd_det was importable")
except ImportError:
    pass
torch.save([run(im) for im in torch.load(images)], out)
"""


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_matches_eager_and_loads_without_kd_det(trained, fmt, tmp_path):
    out = export_student.main(["--config-file", trained["config"], "--weights",
                               trained["weights"], "--output", str(tmp_path), "--format", fmt,
                               "--check", "kd_deploy_val"])
    assert _files(tmp_path) == sorted([f"student_final{SUFFIX[fmt]}",
                                       f"student_final{SUFFIX[fmt]}.json"])
    contract = json.loads(open(out["contract"]).read())
    # The student learnt at half the teacher's 128 px: it is exported at 64 px.
    assert contract["input_size"] == {**contract["input_size"], "min_size": 64, "max_size": 64}
    assert contract["input"]["channel_order"] == "RGB"
    assert contract["class_names"] == ["c0", "c1", "c2"]
    assert contract["check"]["images"] == 3 and contract["check"]["detections"] > 0
    cfg = student_config(trained["cfg"])
    images = [load_model_input(f, cfg)[0] for f in trained["images"]]
    torch.save(images, tmp_path / "images.pt")
    subprocess.run([sys.executable, "-c", _FRESH, fmt, out["model"], str(tmp_path / "images.pt"),
                    str(tmp_path / "dets.pt")], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": ""})
    for image, dets in zip(images, torch.load(tmp_path / "dets.pt")):
        assert detection_differences(_eager(trained, image), dets) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_ap_equals_eager_ap_in_train_net(trained, fmt, tmp_path):
    """tools/train_net.py --eval-only of the student export (eager) and of its TorchScript
    or ONNX file, exported from that student export (a plain GeneralizedRCNN config), on
    the images the student was trained on (its AP elsewhere is near 0 after 40 steps)."""
    plain = export_student.main(["--config-file", trained["config"], "--weights",
                                 trained["weights"], "--output", str(tmp_path)])
    deployed = export_student.main(["--config-file", plain["config"], "--weights",
                                    plain["weights"], "--output", str(tmp_path), "--format", fmt])

    def ap(config, weights, out):
        args = train_net.argument_parser().parse_args(
            ["--config-file", config, "--eval-only", "MODEL.WEIGHTS", weights,
             "OUTPUT_DIR", str(tmp_path / out), "DATASETS.TEST", '("kd_deploy_train",)'])
        return train_net.main(args)["bbox"]

    eager = ap(plain["config"], plain["weights"], "eager")
    assert eager["AP50"] > 1
    # The DistillRCNN config reads the teacher's 128 px; the contract's 64 px is used.
    for config in (plain["config"], trained["config"]):
        exported = ap(config, deployed["model"], "exported")
        assert exported["AP"] == pytest.approx(eager["AP"], abs=0.1)
        assert exported["AP50"] == pytest.approx(eager["AP50"], abs=0.1)


def test_detection_tolerances():
    boxes = torch.tensor([[10.0, 10.0, 2000.0, 50.0], [5.0, 5.0, 20.0, 20.0],
                          [30.0, 30.0, 60.0, 60.0]])
    ref = (boxes, torch.tensor([0.9, 0.9, 0.5]), torch.tensor([1, 2, 0]))
    near = boxes + torch.tensor([[0.4, 0, 1.9, 0], [0.5, 0, 0, 0], [0, 0, 0, 0]])
    assert detection_differences(ref, (near, ref[1] + 5e-5, ref[2])) == []  # 0.5 px or 1e-3
    # Scores tied within the tolerance may come out in either order.
    swap = [1, 0, 2]
    assert detection_differences(ref, (boxes[swap], ref[1], ref[2][swap])) == []
    for other in [(boxes + 0.6, *ref[1:]), (boxes, ref[1] + 2e-4, ref[2]),
                  (boxes, ref[1], ref[2] + 1)]:
        assert detection_differences(ref, other)[0].startswith(
            "3 of 3 detections have no exported counterpart")
    assert detection_differences(ref, tuple(x[:1] for x in ref)) == [
        "1 detections instead of 3"]
    # At the cut (top-k, score threshold), another of the detections tied there may be kept.
    moved = boxes + torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [40, 0, 40, 0]])
    assert detection_differences(ref, (moved, ref[1], ref[2])) == []
    assert detection_differences(ref, (moved, torch.tensor([0.9, 0.9, 0.6]), ref[2])) != []


def _refused(tmp_path, match, *args, cfg=None, **kwargs):
    with pytest.raises(Exception, match=match):
        export_deployable(cfg, *args, **kwargs)
    return _files(tmp_path)


def test_refusals_write_nothing(trained, tmp_path, monkeypatch):
    cfg, weights, out = trained["cfg"], trained["weights"], str(tmp_path)
    wrong = cfg.clone()
    wrong.MODEL.ROI_HEADS.NUM_CLASSES = 5
    assert _refused(tmp_path, "does not match the student", weights, out, "torchscript",
                    cfg=wrong) == []
    masks = student_config(cfg)
    masks.MODEL.MASK_ON = True
    assert _refused(tmp_path, "MODEL.MASK_ON is True", weights, out, "torchscript",
                    cfg=masks) == []
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert _refused(tmp_path, r"pip install -e \.\[deploy\]", weights, out, "onnx",
                    cfg=cfg) == []
    monkeypatch.undo()

    def shifted(path, threads):
        run = load_exported(path, threads)
        return lambda im: [x + 1 if x.is_floating_point() else x for x in run(im)]
    monkeypatch.setattr("kd_det.deploy.export.load_exported", shifted)
    assert _refused(tmp_path, "differs from the eager model on 3 of 3 images", weights, out,
                    "torchscript", cfg=cfg, check=["kd_deploy_val"]) == []
    monkeypatch.undo()

    blocked = tmp_path.parent / f"{tmp_path.name}_a_file"
    blocked.write_text("")
    with pytest.raises(PermissionError, match="--output .*a_file/export.* cannot be written"):
        export_deployable(cfg, weights, str(blocked / "export"), "torchscript")
    first = export_deployable(cfg, weights, out, "torchscript")
    before = open(first["model"], "rb").read()
    assert _refused(tmp_path, "exists already.*--overwrite", weights, out, "torchscript",
                    cfg=cfg) == ["student_final.ts", "student_final.ts.json"]
    assert open(first["model"], "rb").read() == before
    export_deployable(cfg, weights, out, "torchscript", overwrite=True)


def test_the_tool_names_what_to_fix(trained, tmp_path, capsys):
    with pytest.raises(SystemExit, match="nothing written: .*does not match"):
        export_student.main(["--config-file", trained["config"], "--weights",
                             trained["weights"], "--output", str(tmp_path), "--format",
                             "torchscript", "MODEL.ROI_HEADS.NUM_CLASSES", "5"])
    assert _files(tmp_path) == []


def test_a_timed_export_runs_without_kd_det(trained, tmp_path):
    from kd_det.benchmarks.deploy import prepare, time_one

    image = load_model_input(trained["images"][0], student_config(trained["cfg"]))
    assert image[0].shape[-2:] == (64, 64)
    model = prepare("student", trained["config"], trained["weights"], str(tmp_path),
                    trained["images"][0], ["torchscript"])
    assert model["input_hw"] == [64, 64]
    out = time_one(model, "torchscript", threads=1, warmup=1, iters=2)
    assert len(out["latencies_s"]) == 2 and out["imported"] == ["torch"]


def test_the_deploy_benchmark_measures_the_exports_ap_beside_eager(trained, tmp_path):
    from kd_det.benchmarks.deploy import deploy_table, exported_ap, prepare

    model = prepare("student", trained["config"], trained["weights"], str(tmp_path),
                    trained["images"][0], ["eager", "torchscript"])
    ap = exported_ap(model, "kd_deploy_train", str(tmp_path / "eval"))  # its training images
    assert sorted(ap) == ["eager", "torchscript"] and ap["eager"]["AP50"] > 1
    assert abs(ap["torchscript"]["AP"] - ap["eager"]["AP"]) <= 0.1
    table = deploy_table({"rows": [], "ap_dataset": "kd_deploy_train", "student_ap": ap})
    assert f"| torchscript | {ap['torchscript']['AP']:.2f} |" in table
