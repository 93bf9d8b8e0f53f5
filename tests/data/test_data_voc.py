"""VOC-layout registration (BCCD and made-up folders), its errors, and unknown names."""
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, Instances

from kd_det.data import (
    BCCD_CLASSES,
    DatasetNotRegisteredError,
    check_dataset_registered,
    check_records,
    register_all,
    register_voc_layout,
)
from kd_det.engine.evaluation import VOCEvaluator

XML = """<annotation><size><width>40</width><height>30</height><depth>3</depth></size>
{}</annotation>"""
OBJ = ("<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>"
       "<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>")


def make_voc(root, objects, with_imagesets=True):
    """A one-image VOC-layout folder with the given (class, xmin, ymin, xmax, ymax)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    with open(os.path.join(root, "Annotations", "img1.xml"), "w") as f:
        f.write(XML.format("".join(OBJ.format(*o) for o in objects)))
    cv2.imwrite(os.path.join(root, "JPEGImages", "img1.jpg"), np.zeros((30, 40, 3), np.uint8))
    if with_imagesets:
        with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
            f.write("img1\n")
    else:
        os.rmdir(os.path.join(root, "ImageSets", "Main"))
        os.rmdir(os.path.join(root, "ImageSets"))
    return str(root)



def test_zero_area_boxes_dropped_and_voc_coordinates(tmp_path, catalog_names):
    root = make_voc(tmp_path / "voc", [("cat", 5, 6, 20, 25), ("dog", 7, 7, 7, 12),
                                       ("dog", 2, 3, 30, 3)])
    catalog_names.append("t_voc")
    register_voc_layout("t_voc", root, "train", ["cat", "dog"])
    (d,) = DatasetCatalog.get("t_voc")
    assert (d["image_id"], d["width"], d["height"]) == ("img1", 40, 30)
    assert [a["category_id"] for a in d["annotations"]] == [0]
    # 1-based inclusive VOC pixels -> Detectron2's XYXY, as load_voc_instances does
    assert d["annotations"][0]["bbox"] == [4.0, 5.0, 20.0, 25.0]


def test_voc_folder_without_imagesets_refused(tmp_path, catalog_names):
    root = make_voc(tmp_path / "noimagesets", [("cat", 5, 6, 20, 25)], with_imagesets=False)
    catalog_names.append("t_voc_noset")
    register_voc_layout("t_voc_noset", root, "train", ["cat"])  # cheap: nothing read yet
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get("t_voc_noset")
    msg = str(err.value)
    assert "VOC folder without ImageSets" in msg and "t_voc_noset" in msg
    assert os.path.join(root, "ImageSets", "Main", "train.txt") in msg


def test_missing_folder_and_unknown_class_refused(tmp_path, catalog_names):
    catalog_names += ["t_voc_missing", "t_voc_unknown"]
    register_voc_layout("t_voc_missing", str(tmp_path / "nowhere"), "train", ["cat"])
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        DatasetCatalog.get("t_voc_missing")
    root = make_voc(tmp_path / "voc", [("cat", 5, 6, 20, 25), ("zebra", 1, 1, 9, 9)])
    register_voc_layout("t_voc_unknown", root, "train", ["cat", "dog"])
    with pytest.raises(ValueError, match="'zebra'.*img1.xml|img1.xml.*'zebra'"):
        DatasetCatalog.get("t_voc_unknown")


def test_register_twice_replaces(tmp_path, catalog_names):
    catalog_names.append("t_voc_twice")
    register_voc_layout("t_voc_twice", str(tmp_path / "a"), "train", ["cat"])
    register_voc_layout("t_voc_twice", str(tmp_path / "a"), "train", ["cat"])
    register_voc_layout("t_voc_twice", str(tmp_path / "b"), "val", ["cat", "dog"])
    meta = MetadataCatalog.get("t_voc_twice")
    assert (meta.dirname, meta.split, meta.thing_classes) == (
        str(tmp_path / "b"), "val", ["cat", "dog"])


def test_unknown_dataset_name_refused_naming_the_key():
    register_all()
    check_dataset_registered("bccd_train", "DATASETS.TRAIN")
    with pytest.raises(DatasetNotRegisteredError) as err:
        check_dataset_registered("bccd_trian", "DATASETS.TEST")
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    assert msg.startswith("DATASETS.TEST: dataset 'bccd_trian' is not registered")
    assert "bccd_train" in msg and "kd_builtin_val" in msg


def test_bccd_registration(shared_data, monkeypatch):
    bccd = os.path.join(shared_data, "BCCD")
    monkeypatch.setenv("KD_DET_BCCD_ROOT", bccd)
    try:
        register_all()
        counts = {}
        for split, n_images in (("train", 205), ("val", 87), ("trainval", 292), ("test", 72)):
            meta = MetadataCatalog.get(f"bccd_{split}")
            assert (meta.evaluator_type, meta.dirname, meta.split, meta.year) == (
                "pascal_voc", bccd, split, 2007)
            assert meta.thing_classes == list(BCCD_CLASSES)
            dicts = DatasetCatalog.get(f"bccd_{split}")
            assert len(dicts) == n_images
            boxes = np.array([a["bbox"] for d in dicts for a in d["annotations"]])
            assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
            counts[split] = np.bincount([a["category_id"] for d in dicts for a in d["annotations"]],
                                        minlength=3)
        # 4,155 RBC + 372 WBC + 361 Platelets in the XMLs, two zero-area RBC boxes dropped
        np.testing.assert_array_equal(counts["trainval"] + counts["test"], [4153, 372, 361])
        np.testing.assert_array_equal(counts["train"] + counts["val"], counts["trainval"])
        by_id = {d["image_id"]: d for d in DatasetCatalog.get("bccd_trainval")}
        with open(os.path.join(bccd, "Annotations", "BloodImage_00338.xml")) as f:
            n_objects = f.read().count("<object>")
        assert len(by_id["BloodImage_00338"]["annotations"]) == n_objects - 1
    finally:
        monkeypatch.undo()
        register_all()


def test_bccd_metadata_drives_voc_evaluator(shared_data, catalog_names):
    """Ground truth fed back as predictions scores 100 AP50: the registered metadata and the
    box conversion agree with Detectron2's PascalVOCDetectionEvaluator."""
    catalog_names.append("t_bccd_test")
    register_voc_layout("t_bccd_test", os.path.join(shared_data, "BCCD"), "test", BCCD_CLASSES)
    evaluator = PascalVOCDetectionEvaluator("t_bccd_test")
    _feed_ground_truth(evaluator, "t_bccd_test")
    result = evaluator.evaluate()["bbox"]
    assert result["AP50"] == pytest.approx(100.0)


def _feed_ground_truth(evaluator, dataset, drop_class=None):
    evaluator.reset()
    for d in DatasetCatalog.get(dataset):
        anns = [a for a in d["annotations"] if a["category_id"] != drop_class]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in anns]).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.long)
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])


def test_voc_evaluator_reports_ap50_per_class(shared_data, catalog_names):
    """kd_det's VOCEvaluator: Detectron2's numbers, plus AP50 per class whose mean is AP50."""
    catalog_names.append("t_bccd_test")
    register_voc_layout("t_bccd_test", os.path.join(shared_data, "BCCD"), "test", BCCD_CLASSES)
    evaluator = VOCEvaluator("t_bccd_test")
    _feed_ground_truth(evaluator, "t_bccd_test", drop_class=BCCD_CLASSES.index("Platelets"))
    result = evaluator.evaluate()["bbox"]
    assert result["AP50-Platelets"] == 0.0
    assert result["AP50-RBC"] == result["AP50-WBC"] == pytest.approx(100.0)
    assert result["AP50"] == pytest.approx(
        sum(result[f"AP50-{c}"] for c in BCCD_CLASSES) / len(BCCD_CLASSES))


@pytest.mark.parametrize("edit,match", [
    (lambda r: open(f"{r}/Annotations/img1.xml", "w").write("<annotation><size>"),
     "img1.xml is not valid VOC XML"),
    (lambda r: open(f"{r}/Annotations/img1.xml", "w").write(
        XML.format(OBJ.format("RBC", "6O", 1, 9, 9))), "img1.xml has a 'RBC' object without"),
    (lambda r: open(f"{r}/Annotations/img1.xml", "w").write(
        XML.format("<object><name>RBC</name></object>")), "img1.xml has a 'RBC' object"),
    (lambda r: cv2.imwrite(f"{r}/JPEGImages/img1.jpg", np.zeros((31, 40, 3), np.uint8)),
     "img1.jpg: the image is 40x31 but its record says 40x30"),
    (lambda r: open(f"{r}/JPEGImages/img1.jpg", "wb").write(b"not a jpeg"),
     "img1.jpg: the image cannot be read"),
])
def test_bad_voc_files_are_refused_naming_the_file(tmp_path, catalog_names, edit, match):
    """The XML by the loader, the image by the pre-flight (which KD.DATA_CHECK drop can
    tell to drop it instead)."""
    root = make_voc(tmp_path / "voc", [("RBC", 2, 2, 20, 20)])
    edit(root)
    register_voc_layout("kd_test_bad_voc", root, "train", BCCD_CLASSES)
    catalog_names.append("kd_test_bad_voc")
    with pytest.raises(ValueError, match=match):
        check_records(DatasetCatalog.get("kd_test_bad_voc"), "kd_test_bad_voc")


def test_bad_coco_files_are_refused_naming_the_file(tmp_path, catalog_names):
    import json

    from kd_det.data import register_coco_json

    from ..detection_utils import make_coco_dataset

    make_coco_dataset(str(tmp_path / "c"), "kd_test_tmp_coco", n_images=2)
    catalog_names.append("kd_test_tmp_coco")
    ann = json.load(open(tmp_path / "c" / "ann.json"))
    ann["annotations"][0]["bbox"][2] = -10
    (tmp_path / "neg.json").write_text(json.dumps(ann))
    register_coco_json("kd_test_neg", tmp_path / "neg.json", tmp_path / "c")
    catalog_names.append("kd_test_neg")
    with pytest.raises(ValueError, match="000.png: box .* has no positive width"):
        check_records(DatasetCatalog.get("kd_test_neg"), "kd_test_neg")
    ann["annotations"][0]["bbox"][2] = 10
    ann["images"][1]["height"] = 50
    (tmp_path / "size.json").write_text(json.dumps(ann))
    register_coco_json("kd_test_size", tmp_path / "size.json", tmp_path / "c")
    catalog_names.append("kd_test_size")
    with pytest.raises(ValueError, match="001.png: the image is 96x96 but its record says 96x50"):
        check_records(DatasetCatalog.get("kd_test_size"), "kd_test_size")
    (tmp_path / "broken.json").write_text('{"images": [')
    register_coco_json("kd_test_broken", tmp_path / "broken.json", tmp_path / "c")
    catalog_names.append("kd_test_broken")
    with pytest.raises(ValueError, match="broken.json is not a valid COCO instances json"):
        DatasetCatalog.get("kd_test_broken")
    os.remove(tmp_path / "c" / "000.png")
    register_coco_json("kd_test_missing", tmp_path / "c" / "ann.json", tmp_path / "c")
    catalog_names.append("kd_test_missing")
    with pytest.raises(ValueError, match="000.png: the image file is missing"):
        check_records(DatasetCatalog.get("kd_test_missing"), "kd_test_missing")


def test_a_benchmarks_data_root_is_the_flag_then_the_variable_then_the_shared_copy(
        shared_data, monkeypatch, tmp_path):
    from kd_det.data import use_dataset_root

    bccd = os.path.join(shared_data, "BCCD")
    monkeypatch.setenv("KD_DET_BCCD_ROOT", "")  # undo() restores what was there before
    try:
        assert use_dataset_root("KD_DET_BCCD_ROOT", "", str(tmp_path / "absent")) == ""
        assert use_dataset_root("KD_DET_BCCD_ROOT", "", bccd) == bccd  # the shared copy
        assert os.environ["KD_DET_BCCD_ROOT"] == bccd  # exported for worker processes
        assert MetadataCatalog.get("bccd_test").dirname == bccd  # registered there
        assert use_dataset_root("KD_DET_BCCD_ROOT", "", "") == bccd  # the variable
        assert use_dataset_root("KD_DET_BCCD_ROOT", str(tmp_path), bccd) == str(tmp_path)
    finally:
        monkeypatch.undo()
        register_all()
