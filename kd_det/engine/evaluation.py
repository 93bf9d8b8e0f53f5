"""PASCAL VOC evaluation with per-class AP50, as COCOEvaluator reports per-class AP: a gap
between two detectors is read per class (BCCD's platelets vs its large cells)."""
import os
import tempfile
from collections import defaultdict

from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table

__all__ = ["VOCEvaluator"]


class VOCEvaluator(PascalVOCDetectionEvaluator):
    """Detectron2's PascalVOCDetectionEvaluator (AP, AP50, AP75), plus "AP50-<class>",
    also logged as a table."""

    def evaluate(self):
        ret = super().evaluate()
        gathered = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return ret
        predictions = defaultdict(list)
        for per_rank in gathered:
            for cls_id, lines in per_rank.items():
                predictions[cls_id].extend(lines)
        with tempfile.TemporaryDirectory(prefix="voc_per_class_") as dirname:
            template = os.path.join(dirname, "{}.txt")
            for cls_id, name in enumerate(self._class_names):
                with open(template.format(name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [""])))
                _, _, ap = voc_eval(template, self._anno_file_template, self._image_set_path,
                                    name, ovthresh=0.5, use_07_metric=self._is_2007)
                ret["bbox"][f"AP50-{name}"] = ap * 100
        self._logger.info("Per-class AP50:\n" + create_small_table(
            {name: ret["bbox"][f"AP50-{name}"] for name in self._class_names}))
        return ret
