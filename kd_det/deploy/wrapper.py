"""An exported file as a Detectron2 model, so that Detectron2's evaluators measure its AP
(tools/train_net.py --eval-only MODEL.WEIGHTS model.ts|model.onnx)."""
from typing import Dict, List

import torch
from detectron2.config import CfgNode
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from .contract import read_contract
from .runtime import load_exported

__all__ = ["EXPORTED_SUFFIXES", "ExportedDetector", "exported_eval_config"]

EXPORTED_SUFFIXES = (".ts", ".onnx")


def exported_eval_config(cfg: CfgNode, model_path: str) -> CfgNode:
    """`cfg` with the test resize and channel order of the export's contract: the data
    loader then feeds it what the export was built for, whatever config trained it (a
    DistillRCNN config has the teacher's sizes)."""
    contract = read_contract(model_path)
    out = cfg.clone()
    out.defrost()
    out.INPUT.MIN_SIZE_TEST = contract["input_size"]["min_size"]
    out.INPUT.MAX_SIZE_TEST = contract["input_size"]["max_size"]
    out.INPUT.FORMAT = contract["input"]["channel_order"]
    out.freeze()
    return out


class ExportedDetector(torch.nn.Module):
    """Detectron2's model interface around an exported detector: dataset-mapper inputs
    in, Instances resized to each image's original size out, as GeneralizedRCNN does."""

    def __init__(self, model_path: str):
        super().__init__()
        self.run = load_exported(model_path, threads=torch.get_num_threads())

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        results = []
        for x in batched_inputs:
            image = x["image"].float()
            boxes, scores, classes = self.run(image)
            inst = Instances(tuple(image.shape[-2:]), pred_boxes=Boxes(boxes), scores=scores,
                             pred_classes=classes.long())
            h, w = x.get("height", image.shape[-2]), x.get("width", image.shape[-1])
            results.append({"instances": detector_postprocess(inst, h, w)})
        return results
