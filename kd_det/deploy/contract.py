"""The input contract of an exported detector, a JSON file beside it: what a caller does
to an image before the model sees it. The model itself normalises and pads; resizing and
the channel order are the caller's, and its boxes are in the resized image's pixels."""
import json
from typing import Dict, List

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog

from ..file_io import save_json

__all__ = ["contract_path", "input_contract", "read_contract", "write_contract"]


def contract_path(model_path: str) -> str:
    return model_path + ".json"


def _class_names(cfg: CfgNode) -> List[str]:
    """The dataset's class names when a dataset of the config is registered, else ids."""
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        names = MetadataCatalog.get(name).get("thing_classes")
        if names:
            return list(names)
    return [str(i) for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)]


def input_contract(cfg: CfgNode, fmt: str, file_name: str) -> Dict:
    """The contract of the model `cfg` describes (the exported student's own config: its
    INPUT.* sizes are the resolution it was trained at)."""
    return {
        "format": fmt,
        "file": file_name,
        "input": {"name": "image", "shape": "3 x H x W", "dtype": "float32",
                  "value_range": [0, 255], "channel_order": cfg.INPUT.FORMAT},
        "input_size": {"resize": "shortest edge to min_size, longest edge at most max_size",
                       "min_size": cfg.INPUT.MIN_SIZE_TEST,
                       "max_size": cfg.INPUT.MAX_SIZE_TEST},
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),  # applied inside the model
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "outputs": {"boxes": "N x 4, XYXY in input pixels", "scores": "N",
                    "classes": "N, index into class_names"},
        "class_names": _class_names(cfg),
        "score_threshold": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
        "nms_threshold": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
        "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
    }


def write_contract(contract: Dict, path: str) -> None:
    save_json(path, contract)


def read_contract(model_path: str) -> Dict:
    path = contract_path(model_path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path} is missing: an exported model is read with the input "
                                "contract tools/export_student.py writes beside it.") from e
