"""kd_det: knowledge distillation for Detectron2."""
