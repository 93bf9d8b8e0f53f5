"""What a DistillRCNN step costs, against its floor and against naive distillation.

Four steps on the same batch, timed round-robin in one process:

* ``student_step``: the student GeneralizedRCNN's training step alone (forward, backward,
  optimizer step);
* ``teacher_forward``: the teacher work KD needs, alone: ``DistillRCNN.teacher_outputs``
  (backbone, RPN head, box head on the student's sampled ROIs) under no_grad, for every
  teacher;
* ``kd_step``: the DistillRCNN training step;
* ``naive_kd_step``: the teacher's full inference (its own RPN, proposals, NMS, ROI heads,
  post-processing) plus the student step; no KD term is counted, so this is a lower bound
  of a KD step that runs the whole teacher.

The floor of a KD step is student + teacher: ``overhead_ratio`` = kd / (student + teacher),
the ratio of the medians; ``overhead_ratio_per_round`` gives its spread over the rounds,
each round's three steps having run back to back under the same load.

``term_costs`` times, interleaved with the whole KD step, the KD step without each term
(the teacher still computes what every term needs): the difference is what that term's
forward and backward, its adapters included, add to a step.
"""
import functools
import os
import statistics
import tempfile
from typing import Dict, List

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from ..modeling import DistillRCNN
from ..modeling.backbone import efficientnet_lite, mobilenet
from ..modeling.teacher import build_teacher_cfg
from .machine import machine_info, peak_rss_mb
from .timing import interleaved_times

__all__ = ["synthetic_batch", "write_random_teacher", "SpeedBench", "run_speed_bench"]

STEPS = ("student_step", "teacher_forward", "kd_step", "naive_kd_step")


def synthetic_batch(n: int, size: int, num_classes: int, boxes_per_image: int = 8,
                    seed: int = 0) -> List[Dict]:
    """`n` uint8 noise images with bright boxes, in Detectron2's dataset-mapper format."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        img = torch.randint(0, 120, (3, size, size), generator=g, dtype=torch.uint8)
        wh = size * (0.05 + 0.3 * torch.rand(boxes_per_image, 2, generator=g))
        xy = (size - wh) * torch.rand(boxes_per_image, 2, generator=g)
        boxes = torch.cat([xy, xy + wh], dim=1)
        for x0, y0, x1, y1 in boxes.int().tolist():
            img[:, y0:y1, x0:x1] = 200
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (boxes_per_image,), generator=g)
        batch.append({"image": img, "instances": inst, "height": size, "width": size})
    return batch


def write_random_teacher(cfg: CfgNode, path: str) -> str:
    """Save a randomly initialised teacher of KD.TEACHER.CONFIG_FILE at `path` (with the
    offline ImageNet weights when its backbone is kd_det's and they are installed): a
    step's speed does not depend on trained weights, so the benchmark needs none and
    downloads none."""
    tcfg = build_teacher_cfg(cfg).clone()
    tcfg.defrost()
    tcfg.MODEL.MOBILENET.IMAGENET_WEIGHTS = "auto" if mobilenet.find_imagenet_weights() else ""
    tcfg.MODEL.EFFICIENTNET.IMAGENET_WEIGHTS = (
        "auto" if efficientnet_lite.find_imagenet_weights() else "")
    torch.save({"model": build_model(tcfg).state_dict()}, path)
    return path


class SpeedBench:
    """The four steps of one DistillRCNN on one batch (see the module docstring).

    With `amp`, forwards run under autocast (float16 with a GradScaler on CUDA, as
    Detectron2's AMPTrainer does; bfloat16 on CPU). The optimizer is Detectron2's for
    `cfg` at a small learning rate, so that a few dozen steps from random heads stay finite.
    """

    def __init__(self, cfg: CfgNode, batch: List[Dict], amp: bool = False):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.BASE_LR = 1e-4
        self.model = build_model(cfg).train()
        if not isinstance(self.model, DistillRCNN):
            raise ValueError("the speed benchmark needs a DistillRCNN config "
                             "(MODEL.META_ARCHITECTURE 'DistillRCNN').")
        self.batch = batch
        self.device = self.model.device
        self.optimizer = build_optimizer(cfg, self.model)
        on_cuda = self.device.type == "cuda"
        self._autocast = functools.partial(
            torch.autocast, self.device.type,
            dtype=torch.float16 if on_cuda else torch.bfloat16, enabled=amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp and on_cuda)
        self._images, self._boxes = self._sampled_rois()

    @torch.no_grad()
    def _sampled_rois(self):
        """The student's images and sampled ROIs, the input of the teacher work."""
        s = self.model.student
        gt = [x["instances"].to(self.device) for x in self.batch]
        with EventStorage(), self._autocast():
            images = s.preprocess_image(self.batch)
            proposals, _ = s.proposal_generator(images, s.backbone(images.tensor), gt)
            sampled = s.roi_heads.label_and_sample_proposals(proposals, gt)
        return images, [p.proposal_boxes for p in sampled]

    def _train_step(self, module):
        """Detectron2's (AMP)Trainer step, minus data loading and metric logging."""
        with self._autocast():
            loss = sum(module(self.batch).values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def student_step(self):
        self._train_step(self.model.student)

    def teacher_forward(self):
        with self._autocast():
            for name in self.model.teachers:
                self.model.teacher_outputs(self.batch, self._images, self._boxes, name)

    def kd_step(self):
        self._train_step(self.model)

    def naive_kd_step(self):
        with torch.no_grad(), self._autocast():
            for teacher in self.model.teachers.values():
                teacher(self.batch)
        self._train_step(self.model.student)

    def run(self, warmup: int = 2, iters: int = 10) -> Dict:
        """Median seconds per step, the two ratios, peak memory and every sample."""
        on_cuda = self.device.type == "cuda"
        cuda_peak_mb = {}

        def measured(name):
            step = getattr(self, name)
            if not on_cuda:
                return step

            def fn():
                torch.cuda.reset_peak_memory_stats(self.device)
                step()
                cuda_peak_mb[name] = max(cuda_peak_mb.get(name, 0.0),
                                         torch.cuda.max_memory_allocated(self.device) / 2**20)
            return fn

        with EventStorage():
            samples = interleaved_times({n: measured(n) for n in STEPS}, warmup, iters,
                                        sync=torch.cuda.synchronize if on_cuda else None)
        med = {n: statistics.median(v) for n, v in samples.items()}
        out = {f"{n}_s": med[n] for n in STEPS}
        out["overhead_ratio"] = med["kd_step"] / (med["student_step"] + med["teacher_forward"])
        out["naive_over_kd"] = med["naive_kd_step"] / med["kd_step"]
        per_round = [k / (a + b) for a, b, k in zip(
            samples["student_step"], samples["teacher_forward"], samples["kd_step"])]
        out["overhead_ratio_per_round"] = _spread(per_round)
        out["peak_rss_mb"] = peak_rss_mb()
        if on_cuda:
            out["cuda_max_allocated_mb"] = cuda_peak_mb
        out["samples_s"] = samples
        return out


    def term_costs(self, warmup: int = 2, iters: int = 10) -> Dict[str, Dict[str, float]]:
        """{loss name: median seconds a step loses without that term, and the spread of
        the per-round differences}, and "all_terms" (the KD step without any term)."""
        terms = list(self.model.kd_terms)

        def without(drop):
            def step():
                self.model.kd_terms = [t for t in terms if t not in drop]
                try:
                    self.kd_step()
                finally:
                    self.model.kd_terms = terms
            return step

        fns = {"kd_step": self.kd_step, "all_terms": without(terms),
               **{t.loss_name: without([t]) for t in terms}}
        with EventStorage():
            samples = interleaved_times(fns, warmup, iters)
        full = samples.pop("kd_step")
        return {name: {"median_s": statistics.median(full) - statistics.median(v),
                       "per_round": _spread([f - x for f, x in zip(full, v)])}
                for name, v in samples.items()}


def _spread(values: List[float]) -> Dict[str, float]:
    """Median, quartiles and extremes of per-round values."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2],
            "min": min(values), "max": max(values), "n": len(values)}


def run_speed_bench(cfg: CfgNode, image_size: int, batch_size: int, amp: bool = False,
                    warmup: int = 2, iters: int = 10, teacher_weights: str = "",
                    num_teachers: int = 1, profile_terms: bool = False) -> Dict:
    """Build the pair of `cfg` (a random teacher unless `teacher_weights` is given), time
    the four steps and return the figures with the settings they were taken under. With
    `num_teachers` K > 1 the student distils from K copies of that teacher (KD.TEACHERS,
    each randomly initialised): the cost of an ensemble of teachers. `profile_terms` adds
    each term's marginal cost (SpeedBench.term_costs)."""
    cfg = cfg.clone()
    cfg.defrost()
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.KD.TEACHER.WEIGHTS = teacher_weights or write_random_teacher(
            cfg, os.path.join(tmp, "random_teacher.pth"))
        if num_teachers > 1:
            teacher_cfg = cfg.KD.TEACHER.CONFIG_FILE
            cfg.KD.TEACHERS = [[teacher_cfg, cfg.KD.TEACHER.WEIGHTS]] + [
                [teacher_cfg, teacher_weights or write_random_teacher(
                    cfg, os.path.join(tmp, f"random_teacher_{i}.pth"))]
                for i in range(1, num_teachers)]
            cfg.KD.TEACHER.CONFIG_FILE = cfg.KD.TEACHER.WEIGHTS = ""
        bench = SpeedBench(cfg, synthetic_batch(batch_size, image_size,
                                                cfg.MODEL.ROI_HEADS.NUM_CLASSES), amp)
    before = machine_info()
    out = bench.run(warmup, iters)
    if profile_terms:
        out["term_costs"] = bench.term_costs(warmup, iters)
    out.update(image_size=image_size, batch_size=batch_size, amp=amp, warmup=warmup,
               iters=iters, device=cfg.MODEL.DEVICE, threads=torch.get_num_threads(),
               num_teachers=num_teachers,
               random_teacher=not teacher_weights, torch=torch.__version__,
               machine=before, load_avg_1min_after=machine_info()["load_avg_1min"])
    return out
