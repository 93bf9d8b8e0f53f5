"""The detection training engine: KDTrainer, its evaluation, hooks and student export, and
what the LazyConfig path needs (the auxiliary tasks train with kd_det.auxiliary.trainer)."""
from .export import export_lazy_student, export_student, student_config, student_state_dict
from .trainer import (
    KDTrainer,
    ResumeCheckpointer,
    build_evaluator,
    check_class_count,
    check_datasets,
    create_ddp_model,
)

__all__ = ["KDTrainer", "ResumeCheckpointer", "build_evaluator", "check_class_count",
           "check_datasets", "create_ddp_model", "export_lazy_student", "export_student",
           "student_config", "student_state_dict"]
