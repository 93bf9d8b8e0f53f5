"""The bad-input suite: files a user points kd_det at never run code (teacher .pkl / .pth
weights, teacher YAML, checkpoints given to the exporter; model-zoo .pkl still loads),
non-finite teacher weights are refused, and the pre-flight data check refuses (or drops
and lists) missing, unreadable, truncated or mis-sized images and boxes that are not
finite, not positive or outside the image, before anything reaches the trainer; COCO
jsons that pycocotools would merge silently and ambiguous dataset names are refused."""
import os
import pickle

import pytest
import torch
from detectron2.modeling import build_model

from kd_det.checkpoint import SafeDetectionCheckpointer
from kd_det.engine import export_student

from ..detection_utils import kd_cfg


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
    with pytest.raises(ValueError, match="(?s)CONFIG_FILE.*KD.TEACHER.ALLOW_UNSAFE_YAML"):
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
    from ..detection_utils import tiny_rcnn_cfg

    other = build_model(tiny_rcnn_cfg(num_classes=7))
    path = tmp_path / "pretrained.pth"
    torch.save({"model": other.state_dict()}, path)
    model = build_model(cfg)
    SafeDetectionCheckpointer(model).load(str(path))
    s = model.student.state_dict()
    o = other.state_dict()
    assert torch.equal(s["backbone.fpn_lateral2.weight"], o["backbone.fpn_lateral2.weight"])
    assert s["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4  # 3 classes + bg, kept


def _record(tmp_path, bbox, mode=None, size=(40, 30), name="a.jpg"):
    import cv2
    import numpy as np
    from detectron2.structures import BoxMode

    path = tmp_path / name
    cv2.imwrite(str(path), np.zeros((30, 40, 3), np.uint8))
    return {"file_name": str(path), "width": size[0], "height": size[1], "image_id": 0,
            "annotations": [{"bbox": bbox, "bbox_mode": mode or BoxMode.XYWH_ABS,
                             "category_id": 0}]}


@pytest.mark.parametrize("bbox,match", [
    ([10, 5, -10, 8], "no positive width"),
    ([10, 5, 8, float("nan")], "not finite"),
    ([30, 5, 20, 8], "outside the 40x30 image"),
])
def test_preflight_refuses_bad_boxes_naming_the_file(tmp_path, bbox, match):
    from kd_det.data import check_records

    with pytest.raises(ValueError, match=f"a.jpg: box .* {match}"):
        check_records([_record(tmp_path, bbox)], "d")


def test_preflight_drop_mode_lists_what_it_dropped(tmp_path):
    import json

    from kd_det.data import check_records

    good = _record(tmp_path, [1, 1, 10, 10], name="good.jpg")
    bad_box = _record(tmp_path, [10, 5, -10, 8], name="neg.jpg")
    bad_box["annotations"].append(dict(good["annotations"][0]))
    wrong_size = _record(tmp_path, [1, 1, 5, 5], size=(40, 31), name="size.jpg")
    missing = dict(good, file_name=str(tmp_path / "nope.jpg"))
    out = check_records([good, bad_box, wrong_size, missing], "d", mode="drop",
                        output_dir=str(tmp_path / "out"))
    assert [d["file_name"] for d in out] == [good["file_name"], bad_box["file_name"]]
    assert len(out[1]["annotations"]) == 1  # the negative box is gone, the good one kept
    listed = json.loads((tmp_path / "out" / "preflight_d.json").read_text())
    assert [x["file_name"].split("/")[-1] for x in listed["dropped"]] == [
        "neg.jpg", "size.jpg", "nope.jpg"]
    assert listed["not_checked"] == []
    assert check_records([good], "d")  # within the image: accepted
    edge = _record(tmp_path, [0, 0, 40.3, 30.2], name="edge.jpg")  # within the tolerance
    assert check_records([edge], "d")


def test_truncated_jpeg_error_names_the_file(tmp_path):
    from detectron2.config import get_cfg

    from kd_det.data import NamedErrorMapper

    rec = _record(tmp_path, [1, 1, 10, 10], name="trunc.jpg")
    data = open(rec["file_name"], "rb").read()
    open(rec["file_name"], "wb").write(data[: len(data) // 3])
    with pytest.raises(Exception, match="trunc.jpg"):
        NamedErrorMapper(get_cfg(), is_train=True)(rec)


def test_a_mirrored_box_never_reaches_the_trainer(tmp_path):
    """A COCO json registered with Detectron2's own register_coco_instances (no kd_det
    loader in the way): the negative-width box is refused before the first step."""
    import json

    from detectron2.data.datasets import register_coco_instances

    from kd_det.engine import KDTrainer

    from ..detection_utils import make_coco_dataset, short_run, tiny_rcnn_cfg

    make_coco_dataset(str(tmp_path / "c"), "kd_tmp_src", n_images=2)
    ann = json.loads((tmp_path / "c" / "ann.json").read_text())
    ann["annotations"][0]["bbox"][2] = -10
    (tmp_path / "neg.json").write_text(json.dumps(ann))
    register_coco_instances("kd_test_d2_neg", {}, str(tmp_path / "neg.json"),
                            str(tmp_path / "c"))
    cfg = short_run(tiny_rcnn_cfg(), ["kd_test_d2_neg"], [])
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    with pytest.raises(ValueError, match="000.png: box .* no positive width"):
        KDTrainer(cfg)


def truncate(path):
    """Cut an image file to 2/3: its header still reads, decoding it fails."""
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])


def _noise_record(tmp_path, name):
    """A record of a noise JPEG (large enough that a cut leaves the header whole)."""
    import cv2
    import numpy as np

    rec = _record(tmp_path, [1, 1, 10, 10], name=name)
    cv2.imwrite(rec["file_name"], np.random.RandomState(0).randint(0, 255, (30, 40, 3),
                                                                   np.uint8))
    return rec


def test_preflight_decodes_the_whole_image(tmp_path):
    from PIL import Image

    from kd_det.data import check_records

    rec = _noise_record(tmp_path, "trunc.jpg")
    truncate(rec["file_name"])
    with Image.open(rec["file_name"]) as im:
        im.verify()  # the header-only checks pass it
    with pytest.raises(ValueError, match="trunc.jpg: the image cannot be read .*truncated"):
        check_records([rec], "d")
    good = _noise_record(tmp_path, "good.jpg")
    assert check_records([good, rec], "d", mode="drop") == [good]


def test_preflight_sample_names_the_images_it_did_not_check(tmp_path, caplog):
    import json

    from kd_det.data import check_records

    recs = [_record(tmp_path, [1, 1, 10, 10], name=f"{i}.jpg") for i in range(5)]
    out = tmp_path / "out"
    assert len(check_records(recs, "d", max_images=3, output_dir=str(out))) == 5
    listed = json.loads((out / "preflight_d.json").read_text())
    assert listed["dropped"] == [] and len(listed["not_checked"]) == 2
    assert set(listed["not_checked"]) < {r["file_name"] for r in recs}
    assert "sample of 3 of its 5 images" in caplog.text
    assert listed["not_checked"][0] in caplog.text and "preflight_d.json" in caplog.text


@pytest.mark.parametrize("edit,match", [
    (lambda images: images[1].update(id=images[0]["id"]),
     "ann.json lists two images under id 1: 000.png and 001.png"),
    (lambda images: images[1].update(file_name=images[0]["file_name"]),
     "ann.json lists image 000.png twice, under ids 1 and 2"),
])
def test_coco_json_images_that_pycocotools_would_merge_are_refused(tmp_path, catalog_names,
                                                                   edit, match):
    import json

    from detectron2.data import DatasetCatalog

    from kd_det.data import register_coco_json

    from ..detection_utils import make_coco_dataset

    path = make_coco_dataset(str(tmp_path), "kd_test_dup_src", n_images=2)
    ann = json.loads(open(path).read())
    edit(ann["images"])
    open(path, "w").write(json.dumps(ann))
    catalog_names += ["kd_test_dup_src", "kd_test_dup"]
    register_coco_json("kd_test_dup", path, tmp_path)
    with pytest.raises(ValueError, match=match):
        DatasetCatalog.get("kd_test_dup")


def test_voc_class_named_twice_is_refused(tmp_path):
    from kd_det.data import register_from_arguments

    args = _dataset_args(["--dataset-voc", "kd_test_twice", str(tmp_path), "train",
                          "cat,dog,cat"])
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    with pytest.raises(ValueError, match=r"'kd_test_twice'.*names \['cat'\] twice"):
        register_from_arguments(args)


def _dataset_args(argv):
    from kd_det.engine.cli import argument_parser

    return argument_parser().parse_args(["--config-file", "x"] + argv)


@pytest.mark.parametrize("taken", ["coco_2017_train", "bccd_train", "kd_builtin_val"])
def test_taken_dataset_names_are_refused_unless_replaced(tmp_path, catalog_names, caplog,
                                                         taken):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from kd_det.data import register_all, register_from_arguments

    from ..detection_utils import make_coco_dataset

    register_all()
    loader, meta = DatasetCatalog[taken], MetadataCatalog.get(taken).as_dict()
    before = meta["thing_classes"]
    path = make_coco_dataset(str(tmp_path), "kd_test_src", n_images=1)
    catalog_names.append("kd_test_src")
    argv = ["--dataset-coco", taken, path, str(tmp_path)]
    with pytest.raises(ValueError, match=f"Dataset name '{taken}' is taken .*--replace-datasets"):
        register_from_arguments(_dataset_args(argv))
    assert MetadataCatalog.get(taken).thing_classes == before  # still the original
    try:
        register_from_arguments(_dataset_args(argv + ["--replace-datasets"]))
        assert MetadataCatalog.get(taken).json_file == path
        assert f"Dataset '{taken}'" in caplog.text and "is replaced" in caplog.text
        from kd_det.data import replaced_class_names

        assert replaced_class_names(taken) == before  # what a teacher trained on it saw
    finally:  # give the name back to its owner
        DatasetCatalog.remove(taken)
        MetadataCatalog.remove(taken)
        DatasetCatalog.register(taken, loader)
        MetadataCatalog.get(taken).set(**{k: v for k, v in meta.items() if k != "name"})


def test_a_dataset_name_given_twice_is_refused(tmp_path):
    from kd_det.data import register_from_arguments

    argv = ["--dataset-coco", "kd_test_same", str(tmp_path / "a.json"), str(tmp_path),
            "--dataset-voc", "kd_test_same", str(tmp_path), "train", "cat"]
    with pytest.raises(ValueError, match="--dataset-voc kd_test_same: the name is given twice"):
        register_from_arguments(_dataset_args(argv + ["--replace-datasets"]))
