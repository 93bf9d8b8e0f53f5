"""A class subset of a registered dataset: only its boxes, ids remapped in the given order,
scored by the source's evaluator over the kept classes only; refusals name the argument."""
import collections
import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from kd_det.data import register_class_subset, register_coco_json
from kd_det.data.datasets import add_dataset_arguments, register_from_arguments

from ..detection_utils import make_coco_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("subset")
    path = make_coco_dataset(str(root), "kd_subset_raw", n_images=6, seed=3)
    register_coco_json("kd_subset_src", path, str(root))
    return path


def test_subset_keeps_the_chosen_classes_in_the_given_order(source):
    register_class_subset("kd_subset_c2c0", "kd_subset_src", ["c2", "c0"])
    assert MetadataCatalog.get("kd_subset_c2c0").thing_classes == ["c2", "c0"]
    got = collections.Counter(a["category_id"] for r in DatasetCatalog.get("kd_subset_c2c0")
                              for a in r["annotations"])
    with open(source) as f:
        raw = collections.Counter(a["category_id"] for a in json.load(f)["annotations"])
    assert got == {0: raw[3], 1: raw[1]}  # json ids 1..3 are c0..c2
    assert len(DatasetCatalog.get("kd_subset_c2c0")) == 6  # images without a kept box stay


def test_coco_evaluator_scores_only_the_kept_classes(source, tmp_path):
    register_class_subset("kd_subset_c1c2", "kd_subset_src", ["c1", "c2"])
    records = DatasetCatalog.get("kd_subset_c1c2")
    evaluator = COCOEvaluator("kd_subset_c1c2", output_dir=str(tmp_path))
    evaluator.reset()
    for r in records:  # predictions = the ground truth
        inst = Instances((r["height"], r["width"]))
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                 for a in r["annotations"]]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(boxes))
        inst.pred_classes = torch.tensor([a["category_id"] for a in r["annotations"]],
                                         dtype=torch.long)
        evaluator.process([{"image_id": r["image_id"]}], [{"instances": inst}])
    bbox = evaluator.evaluate()["bbox"]
    assert bbox["AP"] == pytest.approx(100.0)
    assert {k for k in bbox if k.startswith("AP-")} == {"AP-c1", "AP-c2"}


class _Noisy(torch.nn.Module):
    """Detections of a dataset's ground truth, shifted, with false positives of every
    class: an imperfect detector whose AP is neither 0 nor 100."""

    def __init__(self, records):
        super().__init__()
        self.records = {r["image_id"]: r for r in records}

    def forward(self, batched_inputs):
        g = torch.Generator().manual_seed(0)
        out = []
        for x in batched_inputs:
            r = self.records[x["image_id"]]
            boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                     for a in r["annotations"]]
            classes = [a["category_id"] for a in r["annotations"]]
            boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            boxes = boxes + torch.randint(-4, 5, boxes.shape, generator=g)
            fp = torch.rand(3, 2, generator=g) * 60
            boxes = torch.cat([boxes, torch.cat([fp, fp + 20], dim=1)])
            classes = classes + torch.randint(0, 3, (3,), generator=g).tolist()
            inst = Instances((r["height"], r["width"]))
            inst.pred_boxes = Boxes(boxes)
            inst.scores = torch.rand(len(boxes), generator=g)
            inst.pred_classes = torch.tensor(classes, dtype=torch.long)
            out.append({"instances": inst})
        return out


def test_a_wider_detector_scores_on_a_subset_as_on_its_own_set(source, tmp_path):
    """A 3-class detector scored on a 2-class subset through its class map gives each kept
    class the AP it has on the whole set (COCO scores each class on its own)."""
    from detectron2.evaluation import inference_on_dataset

    from kd_det.benchmarks.detection import in_classes_of, load_cfg
    from kd_det.engine import KDTrainer

    register_class_subset("kd_subset_c2c0_eval", "kd_subset_src", ["c2", "c0"])
    cfg = load_cfg("configs/builtin/student.yaml", ["DATASETS.TRAIN", "('kd_subset_src',)",
                                                    "OUTPUT_DIR", str(tmp_path)])
    detector = _Noisy(DatasetCatalog.get("kd_subset_src"))

    def ap(dataset, model):
        loader = KDTrainer.build_test_loader(cfg, dataset)
        evaluator = COCOEvaluator(dataset, output_dir=str(tmp_path / dataset))
        return inference_on_dataset(model, loader, evaluator)["bbox"]

    whole = ap("kd_subset_src", detector)
    subset = ap("kd_subset_c2c0_eval", in_classes_of(detector, cfg, "kd_subset_c2c0_eval"))
    assert 0 < whole["AP-c0"] < 100 and 0 < whole["AP-c2"] < 100
    assert (subset["AP-c0"], subset["AP-c2"]) == (whole["AP-c0"], whole["AP-c2"])


@pytest.mark.parametrize("classes,match", [
    (["c1", "c9"], "has no class 'c9'"),
    (["c1", "c1"], r"classes \['c1'\] are named twice"),
    ([], "at least one class"),
])
def test_bad_subsets_are_refused(source, classes, match):
    with pytest.raises(ValueError, match=match):
        register_class_subset("kd_subset_bad", "kd_subset_src", classes)
    with pytest.raises(KeyError, match="not registered"):
        register_class_subset("kd_subset_bad", "kd_no_such_set", ["c1"])


def test_the_flag_registers_a_subset_of_a_set_given_beside_it(source):
    import argparse

    parser = add_dataset_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--dataset-coco", "kd_flag_src", source, os.path.dirname(source),
                              "--dataset-subset", "kd_flag_sub", "kd_flag_src", "c0, c2"])
    register_from_arguments(args)
    assert MetadataCatalog.get("kd_flag_sub").thing_classes == ["c0", "c2"]
    bad = parser.parse_args(["--dataset-subset", "kd_flag_bad", "kd_flag_src", "c0,cat"])
    with pytest.raises(ValueError, match="--dataset-subset kd_flag_bad: 'kd_flag_src' has no "
                                         "class 'cat'"):
        register_from_arguments(bad)


def test_aquarium_three_classes(shared_data):
    root = os.path.join(shared_data, "aquarium")
    if not os.path.isdir(root):
        pytest.skip(f"{root} is absent")
    register_coco_json("kd_aq_train", os.path.join(root, "annotations", "instances_train.json"),
                       os.path.join(root, "images"))
    register_class_subset("kd_aq3_train", "kd_aq_train", ["fish", "jellyfish", "shark"])
    with open(os.path.join(root, "annotations", "instances_train.json")) as f:
        data = json.load(f)
    names = {c["id"]: c["name"] for c in data["categories"]}
    want = collections.Counter(names[a["category_id"]] for a in data["annotations"])
    got = collections.Counter(a["category_id"] for r in DatasetCatalog.get("kd_aq3_train")
                              for a in r["annotations"])
    assert got == {0: want["fish"], 1: want["jellyfish"], 2: want["shark"]}
