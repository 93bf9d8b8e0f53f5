"""Training engines: KDTrainer for detection, AuxTrainer for the auxiliary methods."""
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
