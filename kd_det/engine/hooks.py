"""Training hooks for DistillRCNN runs."""
import logging
import os

from detectron2.engine import HookBase
from detectron2.evaluation import inference_on_dataset
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from .export import export_student

__all__ = ["TeacherEvalHook", "ExportStudentHook"]

logger = logging.getLogger(__name__)


class TeacherEvalHook(HookBase):
    """Evaluate the frozen teacher once before the first KD step and log its AP.

    A teacher whose weights did not match its config scores near zero here, long before
    a whole distillation run is wasted on it.
    """

    def __init__(self, cfg, teacher, build_test_loader, build_evaluator):
        self._cfg = cfg
        self._teacher = teacher
        self._build_test_loader = build_test_loader
        self._build_evaluator = build_evaluator
        self.results = {}

    def before_train(self):
        if self.trainer.iter > 0:  # resumed run: already checked
            return
        for name in self._cfg.DATASETS.TEST:
            loader = self._build_test_loader(self._cfg, name)
            evaluator = self._build_evaluator(
                self._cfg, name, os.path.join(self._cfg.OUTPUT_DIR, "teacher_inference"))
            res = inference_on_dataset(self._teacher, loader, evaluator)
            if comm.is_main_process() and res:
                self.results[name] = res
                logger.info("Teacher on %s: %s", name, res)
                flat = {f"teacher/{name}/{task}/{k}": v for task, r in res.items()
                        for k, v in r.items() if isinstance(v, (int, float))}
                get_event_storage().put_scalars(**flat, smoothing_hint=False)
        comm.synchronize()


class ExportStudentHook(HookBase):
    """After training, write the student as a plain GeneralizedRCNN checkpoint + config."""

    def __init__(self, cfg, checkpointer):
        self._cfg = cfg
        self._checkpointer = checkpointer

    def after_train(self):
        if not comm.is_main_process() or self.trainer.iter + 1 < self.trainer.max_iter:
            return
        path = os.path.join(self._cfg.OUTPUT_DIR, "model_final.pth")
        if os.path.isfile(path):
            out = export_student(self._cfg, path, self._cfg.OUTPUT_DIR)
            logger.info("Exported the student to %s and %s", out["weights"], out["config"])
