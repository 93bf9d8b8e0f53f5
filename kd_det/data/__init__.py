"""Datasets (built-in synthetic, COCO-json, VOC layout) and input transforms."""
