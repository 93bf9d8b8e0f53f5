"""The images --check runs on, resized as the deployed model expects them."""
import os
from typing import List, Sequence, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.data.transforms import ResizeShortestEdge

__all__ = ["image_files", "load_model_input"]

_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def image_files(sources: Sequence[str]) -> List[str]:
    """Files of `sources`: image files, folders of them, or registered dataset names (their
    file_name entries, e.g. bccd_test)."""
    files = []
    for src in sources:
        if os.path.isdir(src):
            files += sorted(os.path.join(src, f) for f in os.listdir(src)
                            if f.lower().endswith(_EXTENSIONS))
        elif os.path.isfile(src):
            files.append(src)
        elif src in DatasetCatalog.list():
            files += [d["file_name"] for d in DatasetCatalog.get(src)]
        else:
            raise FileNotFoundError(f"--check {src}: neither an image, a folder nor a "
                                    "registered dataset name.")
    if not files:
        raise FileNotFoundError(f"--check {' '.join(sources)}: no images found.")
    return files


def load_model_input(path: str, cfg: CfgNode) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """(3, H, W float32 in INPUT.FORMAT, resized to the test size), and the original
    (height, width): what Detectron2's DefaultPredictor feeds its model."""
    image = utils.read_image(path, format=cfg.INPUT.FORMAT)
    resize = ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    resized = resize.get_transform(image).apply_image(image)
    return torch.as_tensor(resized.transpose(2, 0, 1).astype("float32")), image.shape[:2]
