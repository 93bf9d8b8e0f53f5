"""The built-in synthetic dataset: deterministic bytes, valid COCO boxes, small and large
objects with occlusion, lazy generation through Detectron2's DatasetCatalog."""
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from kd_det.data import BUILTIN_CLASSES, BuiltinSpec, prepare_builtin, register_builtin
from kd_det.data.builtin import render_image

TINY = BuiltinSpec(image_size=128, num_train=8, num_val=4, seed=3)


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return out


def _coco(root, split):
    with open(os.path.join(root, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return prepare_builtin(str(tmp_path_factory.mktemp("builtin") / "set"), TINY)



def test_same_seed_same_bytes_other_seed_other_images(tiny_root, tmp_path):
    first = _files(tiny_root)
    assert len([k for k in first if k.endswith(".jpg")]) == TINY.num_train + TINY.num_val
    assert _files(prepare_builtin(str(tmp_path / "again"), TINY)) == first
    other = _files(prepare_builtin(str(tmp_path / "other"),
                                   BuiltinSpec(image_size=128, num_train=8, num_val=4, seed=4)))
    assert other.keys() == first.keys()
    assert all(other[k] != first[k] for k in first if k.endswith(".jpg"))


def test_boxes_valid_and_all_classes_present(tiny_root):
    for split in ("train", "val"):
        coco = _coco(tiny_root, split)
        assert [c["name"] for c in coco["categories"]] == list(BUILTIN_CLASSES)
        assert len(coco["images"]) == TINY.count(split)
        image_ids = {im["id"] for im in coco["images"]}
        assert {(im["width"], im["height"]) for im in coco["images"]} == {(128, 128)}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            assert ann["image_id"] in image_ids and ann["iscrowd"] == 0
            assert 1 <= ann["category_id"] <= len(BUILTIN_CLASSES)
            assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
            assert 0 < ann["area"] <= w * h
        per_image = np.bincount([a["image_id"] for a in coco["annotations"]])
        assert per_image[1:].min() >= 1  # every image has objects
    classes = {a["category_id"] for a in _coco(tiny_root, "train")["annotations"]}
    assert classes == set(range(1, len(BUILTIN_CLASSES) + 1))


def test_small_and_large_objects_and_occlusion():
    spec = BuiltinSpec()  # the registered size, 256 px
    rng = np.random.default_rng(0)
    sides, overlaps = [], 0
    for _ in range(20):
        img, objects = render_image(rng, spec)
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        assert img.std() > 10  # textured, not a flat background
        boxes = np.array([o["bbox"] for o in objects])
        sides += boxes[:, 2:].max(1).tolist()
        x0, y0 = boxes[:, 0], boxes[:, 1]
        x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
        iw = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
        ih = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
        overlaps += int(np.triu((iw > 0) & (ih > 0), 1).sum())
        # Occluded objects stay at least 40 % visible: visible area vs. the full shape can't
        # be read back, but a visible area far below the box area would mean slivers.
        assert all(o["area"] >= 0.15 * o["bbox"][2] * o["bbox"][3] for o in objects)
    sides = np.array(sides)
    assert (sides < 24).sum() >= 10, "small objects (COCO 'small' at 256 px) missing"
    assert (sides > 64).sum() >= 5, "large objects missing"
    assert overlaps >= 5, "objects should overlap (occlusion)"


def test_regenerates_only_when_settings_change(tmp_path):
    root = str(tmp_path / "set")
    spec = BuiltinSpec(image_size=64, num_train=2, num_val=1)
    prepare_builtin(root, spec)
    stamp = os.path.getmtime(os.path.join(root, "train", "000000.jpg"))
    prepare_builtin(root, spec)
    assert os.path.getmtime(os.path.join(root, "train", "000000.jpg")) == stamp
    prepare_builtin(root, BuiltinSpec(image_size=64, num_train=3, num_val=1))
    assert len(_coco(root, "train")["images"]) == 3
    os.remove(os.path.join(root, "val", "000000.jpg"))  # damaged set: redone
    prepare_builtin(root, BuiltinSpec(image_size=64, num_train=3, num_val=1))
    assert os.path.isfile(os.path.join(root, "val", "000000.jpg"))


def test_spec_refuses_bad_settings():
    with pytest.raises(ValueError, match="max_objects"):
        BuiltinSpec(min_objects=5, max_objects=2)
    with pytest.raises(ValueError, match="image_size"):
        BuiltinSpec(image_size=16)


def test_registered_lazily_and_loads_through_dataset_catalog(tmp_path, catalog_names):
    root = tmp_path / "lazy"
    catalog_names += ["t_builtin_train", "t_builtin_val"]
    register_builtin("t_builtin", str(root), TINY)
    register_builtin("t_builtin", str(root), TINY)  # idempotent
    assert not root.exists(), "registration must not generate anything"
    meta = MetadataCatalog.get("t_builtin_val")
    assert meta.evaluator_type == "coco" and meta.thing_classes == list(BUILTIN_CLASSES)
    dicts = DatasetCatalog.get("t_builtin_train")
    assert root.is_dir() and len(dicts) == TINY.num_train
    for d in dicts:
        assert os.path.isfile(d["file_name"]) and d["height"] == d["width"] == 128
        for ann in d["annotations"]:
            assert ann["bbox_mode"] == BoxMode.XYWH_ABS
            assert 0 <= ann["category_id"] < len(BUILTIN_CLASSES)
    assert len(DatasetCatalog.get("t_builtin_val")) == TINY.num_val


def test_kd_builtin_names_registered_without_generating(tmp_path, monkeypatch):
    from kd_det.data import register_all

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    try:
        register_all()
        meta = MetadataCatalog.get("kd_builtin_train")
        assert meta.json_file == str(tmp_path / "kd_builtin" / "annotations" /
                                     "instances_train.json")
        assert meta.evaluator_type == "coco" and meta.builtin_spec == BuiltinSpec()
        assert "kd_builtin_val" in DatasetCatalog.list()
        assert not (tmp_path / "kd_builtin").exists()
    finally:
        monkeypatch.undo()
        register_all()  # back to the paths of the environment
