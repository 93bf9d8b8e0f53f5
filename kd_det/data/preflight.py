"""Pre-flight check of Detectron2 dataset dicts, before the first training step: every
image (exists, decodes in full, the size its record gives) and every box (finite, positive
width and height, inside the image within a tolerance).

A bad record found hours into a run stops it whenever the sampler draws it; a box of
negative width is mirrored by Detectron2's transforms (they take the min and max of the
corners) and trained on. This finds both at once, whatever registered the dataset.
"""
import json
import logging
import math
import os
import random
from typing import Dict, List, Optional, Sequence, Union

from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.structures import BoxMode
from PIL import Image

__all__ = ["check_records", "checked_dataset_dicts", "NamedErrorMapper", "PREFLIGHT_MODES"]

logger = logging.getLogger(__name__)

PREFLIGHT_MODES = ("error", "drop", "off")
_EXIF_ORIENTATION = 0x0112


def _image_problem(record: Dict) -> Optional[str]:
    path = record["file_name"]
    if not os.path.isfile(path):
        return "the image file is missing"
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                w, h = h, w  # Detectron2's read_image applies the EXIF rotation
            im.load()  # a truncated file has a good header; only decoding it all fails
    except Exception as e:
        return f"the image cannot be read ({e})"
    want = (record.get("width"), record.get("height"))
    if all(want) and (w, h) != want:
        return f"the image is {w}x{h} but its record says {want[0]}x{want[1]}"
    record.setdefault("width", w)
    record.setdefault("height", h)
    return None


def _box_problem(ann: Dict, width: int, height: int) -> Optional[str]:
    box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
    if not all(math.isfinite(v) for v in box):
        return f"box {ann['bbox']} is not finite"
    x0, y0, x1, y1 = box
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return f"box {ann['bbox']} has no positive width and height"
    tx, ty = 1 + 0.01 * width, 1 + 0.01 * height
    if x0 < -tx or y0 < -ty or x1 > width + tx or y1 > height + ty:
        return f"box {ann['bbox']} lies outside the {width}x{height} image"
    return None


def check_records(dicts: List[Dict], name: str, mode: str = "error",
                  max_images: int = 20000, output_dir: str = "") -> List[Dict]:
    """Check `dicts` of dataset `name`; return the records to use.

    mode "error" refuses the first bad record, naming the file and the fix; "drop" drops
    bad boxes (and images that cannot be used) and logs how many; "off" checks nothing.
    Beyond `max_images` images a seeded random sample of that many is checked, and the
    others are named as not checked. What was dropped or not checked is listed in
    `output_dir`/preflight_<name>.json (in the log without `output_dir`).
    """
    if mode == "off":
        return dicts
    if mode not in PREFLIGHT_MODES:
        raise ValueError(f"KD.DATA_CHECK={mode!r}: use one of {PREFLIGHT_MODES}.")
    ids = range(len(dicts))
    if len(dicts) > max_images:
        ids = sorted(random.Random(0).sample(ids, max_images))
    sampled = set(ids)
    not_checked = [d["file_name"] for i, d in enumerate(dicts) if i not in sampled]
    bad, drop_images = [], set()
    for i in ids:
        d = dicts[i]
        problem = _image_problem(d)
        if problem is None:
            keep = []
            for ann in d.get("annotations", ()):
                box_problem = _box_problem(ann, d["width"], d["height"])
                if box_problem is None:
                    keep.append(ann)
                else:
                    bad.append({"file_name": d["file_name"], "problem": box_problem})
            if mode == "drop" and "annotations" in d:
                d["annotations"] = keep
        else:
            bad.append({"file_name": d["file_name"], "problem": problem})
            drop_images.add(i)
        if bad and mode == "error":
            raise ValueError(
                f"Dataset {name!r}: {bad[0]['file_name']}: {bad[0]['problem']}. Fix the "
                "annotation or the image, or set KD.DATA_CHECK 'drop' to train without the "
                "bad records (they are listed in OUTPUT_DIR).")
    listing = os.path.join(output_dir, f"preflight_{name}.json") if output_dir else "the log"
    if not_checked:
        logger.warning("Dataset %r: checked (decoded) a sample of %d of its %d images "
                       "(KD.DATA_CHECK_MAX_IMAGES); the %d not checked, e.g. %s, are listed "
                       "in %s.", name, len(sampled), len(dicts), len(not_checked),
                       not_checked[0], listing)
    if bad:
        logger.warning("Dataset %r: dropped %d bad record(s) (%d images); the list is in %s.",
                       name, len(bad), len(drop_images), listing)
    if bad or not_checked:
        report = {"dropped": bad, "not_checked": not_checked}
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            with open(listing, "w") as f:
                json.dump(report, f, indent=1)
        else:
            logger.warning("%s", report)
    return [d for i, d in enumerate(dicts) if i not in drop_images]


def checked_dataset_dicts(names: Union[str, Sequence[str]], data_check: str = "error",
                          max_images: int = 20000, output_dir: str = "", **kwargs) -> List[Dict]:
    """Detectron2's get_detection_dataset_dicts after the checks KDTrainer runs: every name
    registered (else the error lists the near names) and every record pre-flight checked.
    The LazyConfig form of KD.DATA_CHECK; `kwargs` go to get_detection_dataset_dicts."""
    from .datasets import check_dataset_registered

    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        check_dataset_registered(name, "dataloader.*.dataset.names")
    dicts = get_detection_dataset_dicts(names, **kwargs)
    return check_records(dicts, "+".join(names), data_check, max_images, output_dir)


class NamedErrorMapper(DatasetMapper):
    """DatasetMapper whose errors name the image (a truncated JPEG otherwise fails with
    a decoder message and no file name)."""

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except (OSError, ValueError, RuntimeError) as e:
            raise RuntimeError(f"{dataset_dict.get('file_name', '?')}: {type(e).__name__}: "
                               f"{e}") from e
