"""Datasets (built-in synthetic, COCO-json, VOC layout, BCCD, Aquarium) and input transforms."""
from .builtin import BUILTIN_CLASSES, BuiltinSpec, builtin_root, prepare_builtin
from .datasets import (
    AQUARIUM_CLASSES,
    BCCD_CLASSES,
    DatasetNotRegisteredError,
    add_dataset_arguments,
    aquarium_root,
    bccd_root,
    check_dataset_registered,
    check_voc_evaluable,
    load_voc_layout,
    register_all,
    register_builtin,
    register_coco_json,
    register_from_arguments,
    register_voc_layout,
)
from .lr_degrade import LR_SIZES, LRDegradation, down_up
from .preflight import PREFLIGHT_MODES, NamedErrorMapper, check_records, checked_dataset_dicts

__all__ = [
    "AQUARIUM_CLASSES",
    "BCCD_CLASSES",
    "BUILTIN_CLASSES",
    "BuiltinSpec",
    "DatasetNotRegisteredError",
    "LRDegradation",
    "LR_SIZES",
    "NamedErrorMapper",
    "PREFLIGHT_MODES",
    "add_dataset_arguments",
    "aquarium_root",
    "bccd_root",
    "builtin_root",
    "check_dataset_registered",
    "check_records",
    "checked_dataset_dicts",
    "check_voc_evaluable",
    "down_up",
    "load_voc_layout",
    "prepare_builtin",
    "register_all",
    "register_builtin",
    "register_coco_json",
    "register_from_arguments",
    "register_voc_layout",
]
