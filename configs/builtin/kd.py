# LazyConfig form of configs/builtin/kd.yaml: the built-in demo's student distilled from
# configs/builtin/teacher.yaml with Chen et al.'s terms, weight inheritance and the PKD
# hint.
#   python tools/lazyconfig_train_net.py --config-file configs/builtin/kd.py
# (train the teacher first: python tools/train_net.py --config-file configs/builtin/teacher.yaml)
# tests/engine/test_lazyconfig.py checks that it builds the model kd.yaml builds.
from detectron2.config import LazyCall as L

from kd_det.modeling import DistillRCNN, load_teacher

from ..common.kd_chen2017 import kd_terms
from .student import dataloader, lr_multiplier, optimizer, train  # noqa: F401 (the config)
from .student import model as student

model = L(DistillRCNN)(
    student=student,
    teacher=L(load_teacher)(
        config_file="configs/builtin/teacher.yaml",
        weights="output/builtin/teacher/model_final.pth",
    ),
    kd_terms=kd_terms,
    init_from_teacher=True,
)
model.kd_terms.hint.loss = "pkd"
model.kd_terms.hint.weight = 6.0
train.output_dir = "./output/builtin/kd_lazy"
