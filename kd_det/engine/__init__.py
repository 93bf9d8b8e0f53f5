"""Training engines: KDTrainer for detection, AuxTrainer for the auxiliary methods."""
from .export import export_student, student_config, student_state_dict
from .trainer import KDTrainer, build_evaluator, check_datasets

__all__ = ["KDTrainer", "build_evaluator", "check_datasets", "export_student",
           "student_config", "student_state_dict"]
