"""Training hooks for DistillRCNN runs."""
import json
import logging
import os
import time
from typing import Callable, Dict

from detectron2.engine import HookBase, hooks
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

__all__ = ["TeacherEvalHook", "ExportStudentHook", "EvalCurveHook"]

logger = logging.getLogger(__name__)


class TeacherEvalHook(HookBase):
    """Evaluate each frozen teacher once before the first KD step and log its AP.

    A teacher whose weights did not match its config scores near zero here, long before
    a whole distillation run is wasted on it.
    """

    def __init__(self, teachers: Dict[str, nn.Module],
                 evaluate: Callable[[nn.Module], Dict[str, Dict]]):
        """`teachers`: {name: teacher} (DistillRCNN.teachers_in_student_classes(): each
        scored in the student's classes); `evaluate(model)` gives
        {test set name: Detectron2 evaluation results}."""
        self._teachers = teachers
        self._evaluate = evaluate
        self.results = {}

    def before_train(self):
        if self.trainer.iter > 0:  # resumed run: already checked
            return
        for teacher_name, teacher in self._teachers.items():
            for name, res in self._evaluate(teacher).items():
                if comm.is_main_process() and res:
                    self.results.setdefault(teacher_name, {})[name] = res
                    logger.info("%s on %s: %s", teacher_name.capitalize().replace("_", " "),
                                name, res)
                    flat = {f"{teacher_name}/{name}/{task}/{k}": v for task, r in res.items()
                            for k, v in r.items() if isinstance(v, (int, float))}
                    get_event_storage().put_scalars(**flat, smoothing_hint=False)
        comm.synchronize()


class ExportStudentHook(HookBase):
    """After training, write the student as a plain GeneralizedRCNN checkpoint + config."""

    def __init__(self, export: Callable[[str], Dict[str, str]], output_dir: str):
        """`export(checkpoint_path)` writes the student and gives {"weights", "config"}."""
        self._export = export
        self._output_dir = output_dir
        self._finished = False

    def after_step(self):
        # After the periodic checkpointer (this hook is last): model_final.pth is this run's.
        self._finished = self.trainer.iter + 1 >= self.trainer.max_iter

    def after_train(self):
        # A run that failed on its last step must not export an older model_final.pth.
        if not comm.is_main_process() or not self._finished:
            return
        path = os.path.join(self._output_dir, "model_final.pth")
        if os.path.isfile(path):
            out = self._export(path)
            logger.info("Exported the student to %s and %s", out["weights"], out["config"])


class EvalCurveHook(hooks.EvalHook):
    """Detectron2's EvalHook that also appends each evaluation to OUTPUT_DIR/curve.json with
    its iteration and the training wall-clock so far (evaluation time excluded), for
    learning curves and time-to-accuracy. A resumed run keeps its earlier points."""

    def __init__(self, eval_period: int, eval_function, output_dir: str):
        super().__init__(eval_period, self._evaluate_and_record)
        self._evaluate = eval_function
        self._path = os.path.join(output_dir, "curve.json")
        self._rows, self._seconds, self._t0 = [], 0.0, 0.0

    def before_train(self):
        if os.path.isfile(self._path):
            with open(self._path) as f:
                self._rows = [r for r in json.load(f) if r["iter"] <= self.trainer.iter]
            self._seconds = self._rows[-1]["seconds"] if self._rows else 0.0

    def before_step(self):
        self._t0 = time.perf_counter()

    def after_step(self):
        self._seconds += time.perf_counter() - self._t0
        super().after_step()

    def _evaluate_and_record(self):
        res = self._evaluate()
        if not comm.is_main_process() or not res:
            return res
        flat = {f"{task}/{k}": float(v) for task, r in res.items() for k, v in r.items()
                if isinstance(v, (int, float))}
        it = min(self.trainer.iter + 1, self.trainer.max_iter)  # after_train: iter = max_iter
        self._rows.append({"iter": it, "seconds": self._seconds, **flat})
        tmp = self._path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._rows, f, indent=1)
        os.replace(tmp, self._path)
        return res
