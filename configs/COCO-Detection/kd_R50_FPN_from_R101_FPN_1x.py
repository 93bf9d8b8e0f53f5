# LazyConfig form of kd_R50_FPN_from_R101_FPN_1x.yaml: Detectron2's model-zoo R-101-FPN 3x
# teacher distilled into an R-50-FPN student with Chen et al.'s terms, on COCO 2017.
#   python tools/lazyconfig_train_net.py --num-gpus 8 \
#     --config-file configs/COCO-Detection/kd_R50_FPN_from_R101_FPN_1x.py \
#     model.teacher.weights=/path/to/model_final_f6e8b1.pkl
# The teacher weights are the model zoo's faster_rcnn_R_101_FPN_3x checkpoint, downloaded
# by you beforehand.
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from kd_det.data import checked_dataset_dicts
from kd_det.modeling import DistillRCNN, load_teacher

from ..common.kd_chen2017 import kd_terms

student = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
student.roi_heads.mask_in_features = None  # Faster R-CNN: no mask branch
student.roi_heads.mask_pooler = None
student.roi_heads.mask_head = None

model = L(DistillRCNN)(
    student=student,
    teacher=L(load_teacher)(
        config_file="COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml",
        weights="",
    ),
    kd_terms=kd_terms,
)

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.dataset = L(checked_dataset_dicts)(names="coco_2017_train")
dataloader.train.mapper.use_instance_mask = False
dataloader.test.dataset = L(checked_dataset_dicts)(names="coco_2017_val", filter_empty=False)
optimizer = model_zoo.get_config("common/optim.py").SGD
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "./output/coco_kd_R50_from_R101_lazy"
