"""KDTrainer: Detectron2's DefaultTrainer for plain teachers and DistillRCNN students.

What it adds to DefaultTrainer: the evaluator follows the dataset's metadata (COCO or
PASCAL VOC), datasets are checked before anything is built, the teacher is evaluated once
before the first KD step, the student is exported at the end, DDP works on CPU (gloo), and
``--resume`` continues exactly: RNG states travel in the checkpoint and the sampler skips
the batches already seen.
"""
import itertools
import logging
import os
import random
from unittest import mock

import numpy as np
import torch
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import DefaultTrainer, hooks
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import SafeDetectionCheckpointer
from ..data import (
    NamedErrorMapper,
    check_dataset_registered,
    check_records,
    check_voc_evaluable,
    replaced_class_names,
)
from ..modeling import DistillRCNN
from .evaluation import VOCEvaluator
from .export import export_student
from .hooks import EvalCurveHook, ExportStudentHook, TeacherEvalHook

__all__ = ["KDTrainer", "ResumeCheckpointer", "build_evaluator", "check_datasets",
           "check_classes", "check_class_count", "create_ddp_model"]

logger = logging.getLogger(__name__)


def check_datasets(cfg) -> None:
    """Every DATASETS.TRAIN/TEST name must be registered; say which and how to fix it."""
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            check_dataset_registered(name, f"DATASETS.{key}")


def _class_names(name: str):
    return MetadataCatalog.get(name).get("thing_classes", None)


def check_class_count(k: int, name: str, key: str, dicts=None,
                      num_classes_key: str = "MODEL.ROI_HEADS.NUM_CLASSES"):
    """Refuse dataset `name` when its class list or labels do not fit a model of `k`
    classes; return its class names (None when its metadata has none)."""
    dicts = DatasetCatalog.get(name) if dicts is None else dicts  # sets COCO json metadata
    names = _class_names(name)
    fix = (f"set {num_classes_key} to the dataset's class count (and use a teacher trained "
           f"on the same classes), or fix the dataset {name!r}.")
    if names is not None and len(names) != k:
        raise ValueError(f"{key}: dataset {name!r} has {len(names)} classes {list(names)[:10]} "
                         f"but {num_classes_key}={k}; {fix}")
    top = max((a["category_id"] for d in dicts for a in d.get("annotations", ())), default=-1)
    if top >= k:
        raise ValueError(f"{key}: dataset {name!r} has annotations of class index {top} but "
                         f"{num_classes_key}={k} (index {k} is background); {fix}")
    return names


def check_classes(cfg, name: str, key: str, dicts=None) -> None:
    """Refuse a dataset whose classes do not fit the model: a class list of another length
    than MODEL.ROI_HEADS.NUM_CLASSES (an extra class would get the background label and be
    trained as background), a label out of range, or (for DistillRCNN) class names that
    differ from those of the teacher's training data when its metadata has them."""
    k = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    names = check_class_count(k, name, key, dicts)
    if cfg.MODEL.META_ARCHITECTURE == "DistillRCNN" and names is not None:
        from ..modeling.teacher import build_teacher_cfgs, teacher_specs

        for tcfg, (_, _, t_key) in zip(build_teacher_cfgs(cfg), teacher_specs(cfg)):
            for t_name in tcfg.DATASETS.TRAIN:
                # The teacher saw the name's first registration, not a --replace-datasets one.
                t_names = replaced_class_names(t_name) or (
                    _class_names(t_name) if t_name in DatasetCatalog.list() else None)
                if t_names is not None and len(t_names) == k and list(t_names) != list(names):
                    raise ValueError(
                        f"{key}: dataset {name!r} has classes {list(names)[:10]} but the "
                        f"teacher ({t_key}) was trained on {t_name!r} with classes "
                        f"{list(t_names)[:10]}; distil from a teacher of the same classes in "
                        "the same order.")


def _checked_test_dicts(cfg, name: str):
    return check_records(DatasetCatalog.get(name), name, cfg.KD.DATA_CHECK,
                         cfg.KD.DATA_CHECK_MAX_IMAGES, cfg.OUTPUT_DIR)


def build_evaluator(cfg, dataset_name, output_folder=None):
    """COCO AP for COCO-format datasets, PASCAL VOC mAP@0.5 (+0.5:0.95 mean, and AP50 per
    class) for VOC ones. COCO's results go to `output_folder`, default OUTPUT_DIR/inference
    as in Detectron2's tools (a dataset without a json, e.g. a class subset, is converted
    there)."""
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type", "")
    if kind == "coco":
        return COCOEvaluator(dataset_name, output_dir=output_folder
                             or os.path.join(cfg.OUTPUT_DIR, "inference"))
    if kind == "pascal_voc":
        return VOCEvaluator(dataset_name)
    raise ValueError(
        f"DATASETS.TEST: dataset {dataset_name!r} has evaluator_type={kind!r}; kd_det "
        "evaluates 'coco' and 'pascal_voc' datasets (set it in MetadataCatalog).")


def create_ddp_model(model, fp16_compression: bool = False, **kwargs):
    """Detectron2's create_ddp_model, minus device_ids for CPU modules (gloo)."""
    if comm.get_world_size() == 1:
        return model
    kwargs.setdefault("broadcast_buffers", False)
    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:
        kwargs["device_ids"] = [comm.get_local_rank()]
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def _numpy_state_to_tensors(state):
    name, keys, pos, has_gauss, cached = state
    return [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
            float(cached)]


def _numpy_state_from_tensors(state):
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


class ResumeCheckpointer(SafeDetectionCheckpointer):
    """SafeDetectionCheckpointer whose resume refuses a checkpoint of other tensor shapes.

    Loading weights (MODEL.WEIGHTS) skips a tensor of another shape, as Detectron2 does, so
    that a pretrained detector of another class count gives all but its head. Resuming
    with a changed config that way would start from a half-random model, and the
    optimizer's saved moments of the old shapes would crash the first step.
    """

    _resuming = ""

    def resume_or_load(self, path, *, resume=True):
        self._resuming = self.get_checkpoint_file() if resume and self.has_checkpoint() else ""
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming = ""

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if self._resuming and incompatible.incorrect_shapes:
            shapes = "; ".join(f"{k}: checkpoint {tuple(c)}, model {tuple(m)}"
                               for k, c, m in incompatible.incorrect_shapes[:5])
            more = len(incompatible.incorrect_shapes) - 5
            raise ValueError(
                f"--resume: {self._resuming} was written by a model of other shapes than the "
                f"config gives ({shapes}{f'; and {more} more' if more > 0 else ''}). Resume "
                "with the config it was trained with (OUTPUT_DIR/config.yaml), or train the "
                "changed config in another OUTPUT_DIR (MODEL.WEIGHTS can start it from that "
                "checkpoint).")
        return incompatible


class _SkippingSampler(TrainingSampler):
    """TrainingSampler that can skip the indices of batches consumed before a resume."""

    skip = 0

    def __iter__(self):
        yield from itertools.islice(super().__iter__(), self.skip, None)


class KDTrainer(DefaultTrainer):
    """DefaultTrainer with the additions of this module's docstring; its ``__init__``
    checks the test sets and leaves the rest to Detectron2's."""

    _sampler = None  # the training loader's, when it can skip (see resume_or_load)
    _rng_to_restore = None

    def __init__(self, cfg):
        check_datasets(cfg)
        for name in cfg.DATASETS.TEST:  # the training sets are checked as they load
            dicts = _checked_test_dicts(cfg, name)
            check_classes(cfg, name, "DATASETS.TEST", dicts)
            check_voc_evaluable(name)
        # DefaultTrainer.__init__ calls its module's create_ddp_model, which gives DDP
        # device_ids even for a CPU model (refused by torch, so no gloo training), and
        # builds a DetectionCheckpointer; it has no build_* method for either. Ours stand
        # in for them during the call.
        with mock.patch.multiple(d2_defaults, create_ddp_model=create_ddp_model,
                                 DetectionCheckpointer=ResumeCheckpointer):
            super().__init__(cfg)

    def build_train_loader(self, cfg):
        """Detectron2's loader over the checked training dicts (classes, pre-flight), with
        a resumable sampler when DATALOADER.SAMPLER_TRAIN is TrainingSampler."""
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
            if cfg.MODEL.KEYPOINT_ON else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        for name in cfg.DATASETS.TRAIN:
            check_classes(cfg, name, "DATASETS.TRAIN", dataset if len(cfg.DATASETS.TRAIN) == 1
                          else None)
        dataset = check_records(dataset, "+".join(cfg.DATASETS.TRAIN), cfg.KD.DATA_CHECK,
                                cfg.KD.DATA_CHECK_MAX_IMAGES, cfg.OUTPUT_DIR)
        seed = cfg.SEED if cfg.SEED >= 0 else None
        if cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler":
            self._sampler = _SkippingSampler(len(dataset), seed=seed)
        # A seeded loader draws its worker seeds from its own generator, not from the
        # global torch RNG that resume restores.
        return build_detection_train_loader(cfg, dataset=dataset, sampler=self._sampler,
                                            mapper=NamedErrorMapper(cfg, True), seed=seed)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(_checked_test_dicts(cfg, dataset_name),
                                           mapper=NamedErrorMapper(cfg, False),
                                           num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_hooks(self):
        ret = super().build_hooks()
        at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
        ret[at] = EvalCurveHook(self.cfg.TEST.EVAL_PERIOD, ret[at]._func, self.cfg.OUTPUT_DIR)
        model = self._unwrapped_model()
        if isinstance(model, DistillRCNN):
            if self.cfg.KD.TEACHER.EVAL_BEFORE_TRAIN and self.cfg.DATASETS.TEST:
                ret.insert(0, TeacherEvalHook(model.teachers_in_student_classes(),
                                              self._evaluate_teacher))
            out = self.cfg.OUTPUT_DIR
            ret.append(ExportStudentHook(lambda path: export_student(self.cfg, path, out), out))
        return ret

    def _evaluate_teacher(self, teacher):
        folder = os.path.join(self.cfg.OUTPUT_DIR, "teacher_inference")
        return {name: inference_on_dataset(teacher, self.build_test_loader(self.cfg, name),
                                           self.build_evaluator(self.cfg, name, folder))
                for name in self.cfg.DATASETS.TEST}

    def _unwrapped_model(self):
        model = self._trainer.model
        return model.module if isinstance(model, DistributedDataParallel) else model

    def train(self):
        """Train, then return the last evaluation results (DefaultTrainer returns them only
        when TEST.EXPECTED_RESULTS is set)."""
        super().train()
        return getattr(self, "_last_eval_results", None)

    # ---- exact resume ----------------------------------------------------------------
    def state_dict(self):
        ret = super().state_dict()
        ret["rng"] = {
            "python": random.getstate(),
            # Tensors, not ndarrays: checkpoints must load with torch.load(weights_only=True).
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._rng_to_restore = state_dict.get("rng")

    def resume_or_load(self, resume=True):
        """DefaultTrainer.resume_or_load, then fast-forward data and RNGs when resuming.

        Exact when DATALOADER.NUM_WORKERS is 0 and SAMPLER_TRAIN is TrainingSampler; with
        workers, the data order after a resume is a fresh one (Detectron2's behaviour).
        """
        super().resume_or_load(resume)
        if not (resume and self.start_iter > 0):
            return
        if self._sampler is not None:
            per_rank = self.cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
            self._sampler.skip = self.start_iter * per_rank
        rng = self._rng_to_restore
        if rng:
            random.setstate(rng["python"])
            np.random.set_state(_numpy_state_from_tensors(rng["numpy"]))
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        logger.info("Resumed at iteration %d", self.start_iter)
