"""Dataset registration: COCO-json and VOC-layout folders with any class list, BCCD, and
kd_det's built-in set.

Registering only records paths (no file is read), so ``import kd_det`` stays cheap and
works when a dataset is absent; the files are checked when the dataset is first loaded,
which Detectron2 does before the first training step, with errors that name the dataset,
the path and the fix. The same registration again is a no-op, and these functions
replace a different dataset of the same name (so ``register_all`` can follow a changed
root) unless told not to, as the command line's --dataset-coco / --dataset-voc are.
"""
import difflib
import json
import logging
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode

from .builtin import BUILTIN_CLASSES, BuiltinSpec, builtin_root, prepare_builtin

__all__ = [
    "AQUARIUM_CLASSES",
    "BCCD_CLASSES",
    "add_dataset_arguments",
    "aquarium_root",
    "register_from_arguments",
    "DatasetNotRegisteredError",
    "bccd_root",
    "check_dataset_registered",
    "check_voc_evaluable",
    "load_voc_layout",
    "register_all",
    "register_builtin",
    "register_class_subset",
    "register_coco_json",
    "register_voc_layout",
    "replaced_class_names",
]

logger = logging.getLogger(__name__)

BCCD_CLASSES = ("RBC", "WBC", "Platelets")
BCCD_SPLITS = ("train", "val", "trainval", "test")
# Roboflow's Aquarium (CC BY 4.0), category ids 1..7 in this order.
AQUARIUM_CLASSES = ("fish", "jellyfish", "penguin", "puffin", "shark", "starfish", "stingray")
AQUARIUM_SPLITS = BCCD_SPLITS

# Names registered through this module, listed when a dataset name is unknown.
_KD_DATASETS: Dict[str, dict] = {}
# The class names of replaced registrations: a teacher's config names the dataset it was
# trained on, and that was the first registration of the name, not the replacement.
_REPLACED_CLASSES: Dict[str, Optional[list]] = {}


def _describe(name: str) -> str:
    meta = MetadataCatalog.get(name)
    if meta.get("dirname", None):
        return f"VOC folder {meta.dirname} split {meta.get('split', '?')}"
    if meta.get("json_file", None):
        return f"COCO json {meta.json_file}"
    return "registered by Detectron2 or by code"


def _register(name: str, loader, metadata: dict, replace: bool = True) -> None:
    """Register `name`; the same registration again is a no-op. A different dataset
    registered under `name` is replaced (with a warning) when `replace`, else refused."""
    if name in DatasetCatalog.list():
        if _KD_DATASETS.get(name) == metadata:
            return
        if not replace:
            raise ValueError(
                f"Dataset name {name!r} is taken ({_describe(name)}). Register yours under "
                "a name of its own, or pass --replace-datasets to replace that dataset.")
        logger.warning(f"Dataset {name!r} ({_describe(name)}) is replaced by a new "
                       "registration of that name.")
        _REPLACED_CLASSES.setdefault(name, MetadataCatalog.get(name).get("thing_classes", None))
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)
    _KD_DATASETS[name] = dict(metadata)


# ---------------------------------------------------------------------------------------
# COCO json


def _load_coco(name: str, json_file: str, image_root: str) -> List[dict]:
    """Detectron2's load_coco_json, refusing what it would take silently. The images
    themselves are checked by the pre-flight (kd_det.data.check_records), which can drop
    them (KD.DATA_CHECK drop) where a refusal here could not."""
    for what, path, isfile in (("json file", json_file, True), ("image folder", image_root,
                                                                False)):
        if not (os.path.isfile(path) if isfile else os.path.isdir(path)):
            raise FileNotFoundError(
                f"Dataset {name!r}: COCO {what} {path} does not exist. Put the data there "
                "(layout: docs/datasets.md) or register the dataset again with the right "
                "path: kd_det.data.register_coco_json(name, json_file, image_root).")
    try:
        with open(json_file) as f:
            images = [(im["id"], im["file_name"]) for im in json.load(f).get("images", [])]
        dicts = load_coco_json(json_file, image_root, name)
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError: ValueError
        raise ValueError(f"Dataset {name!r}: {json_file} is not a valid COCO instances json "
                         f"({type(e).__name__}: {e}).") from e
    _check_coco_image_ids(name, json_file, images)
    return dicts


def _check_coco_image_ids(name: str, json_file: str, images: List[tuple]) -> None:
    """Refuse (id, file_name) pairs that pycocotools would merge: of two images sharing an
    id one is lost and the other gets its boxes; one file under two ids has its boxes
    counted twice."""
    by_id, by_file = {}, {}
    for image_id, file_name in images:
        if image_id in by_id:
            raise ValueError(
                f"Dataset {name!r}: {json_file} lists two images under id {image_id}: "
                f"{by_id[image_id]} and {file_name}; give each image an id of its own (and "
                "its annotations that image_id).")
        if file_name in by_file:
            raise ValueError(
                f"Dataset {name!r}: {json_file} lists image {file_name} twice, under ids "
                f"{by_file[file_name]} and {image_id}; list each file once, with all its "
                "annotations under that id.")
        by_id[image_id], by_file[file_name] = file_name, image_id


def register_coco_json(name: str, json_file: str, image_root: str,
                       metadata: Optional[dict] = None, replace: bool = True) -> None:
    """A COCO-format detection dataset (any categories), evaluated with COCOEvaluator.

    Thin over Detectron2's ``register_coco_instances``; adds the check of the paths and
    image ids at load time. Class names come from the json's "categories" when the dataset
    is loaded. `replace` False refuses a name another dataset has.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    _register(name, lambda: _load_coco(name, json_file, image_root),
              dict(metadata or {}, json_file=json_file, image_root=image_root,
                   evaluator_type="coco"), replace)


def _subset_records(name: str, source: str, index: Dict[int, int]) -> List[dict]:
    out = []
    for record in DatasetCatalog.get(source):
        kept = [dict(a, category_id=index[a["category_id"]])
                for a in record.get("annotations", []) if a["category_id"] in index]
        out.append(dict(record, annotations=kept))  # an image left without boxes stays
    logger.info("Dataset %r: %d images of %r, %d boxes of its classes %s", name, len(out),
                source, sum(len(r["annotations"]) for r in out),
                MetadataCatalog.get(name).thing_classes)
    return out


def register_class_subset(name: str, source: str, classes: Sequence[str],
                          replace: bool = True, key: str = "register_class_subset") -> None:
    """Dataset `name`: the images of registered dataset `source` with only the boxes of
    `classes` (source class names, in the new label order), e.g. a 3-class student's data
    cut from a teacher's 7-class set. Its evaluator is the source's: COCO converts the
    subset's own records (no source json, whose ids would be wrong), PASCAL VOC reads the
    source's XML by class name. Refused, naming `key`: an unknown source, a class it does
    not have, a class named twice, no class."""
    check_dataset_registered(source, key)
    meta = MetadataCatalog.get(source)
    if meta.get("thing_classes", None) is None:
        DatasetCatalog.get(source)  # a COCO json's class names are known once it is read
    names = list(meta.get("thing_classes", None) or [])
    classes = list(classes)
    if not classes:
        raise ValueError(f"{key} {name}: give at least one class of {source!r}.")
    for c in classes:
        if c not in names:
            close = difflib.get_close_matches(c, names, n=1)
            raise ValueError(f"{key} {name}: {source!r} has no class {c!r}"
                             + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; its classes: {names}.")
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise ValueError(f"{key} {name}: classes {twice} are named twice.")
    index = {names.index(c): i for i, c in enumerate(classes)}
    carried = {k: meta.get(k) for k in ("evaluator_type", "dirname", "split", "year")
               if meta.get(k, None) is not None}
    _register(name, lambda: _subset_records(name, source, index),
              dict(carried, thing_classes=classes, subset_of=source), replace)


# ---------------------------------------------------------------------------------------
# PASCAL VOC layout


def load_voc_layout(name: str, root: str, split: str,
                    class_names: Sequence[str]) -> List[dict]:
    """Detectron2 dicts of a VOC-layout folder, like Detectron2's ``load_voc_instances`` but
    for any class list, with boxes narrower or lower than 1 px dropped (BCCD has two) and
    clear errors for a missing folder, split list, annotation or unknown class."""
    split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Dataset {name!r}: VOC folder {root} does not exist. Put the data there "
            "(layout: docs/datasets.md) or point the registration at it "
            "(KD_DET_BCCD_ROOT for BCCD, or kd_det.data.register_voc_layout(name, root, ...)).")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(
            f"Dataset {name!r}: VOC folder without ImageSets: {split_file} is missing. A "
            f"VOC-layout folder needs ImageSets/Main/{split}.txt listing the image ids of "
            f"split {split!r}, one per line (e.g. 'ls {root}/Annotations | sed s/.xml$// > "
            f"{split_file}'), next to Annotations/ and JPEGImages/.")
    with open(split_file) as f:
        file_ids = [line.split()[0] for line in f if line.strip()]
    dicts, dropped = [], []
    for file_id in file_ids:
        anno_file = os.path.join(root, "Annotations", f"{file_id}.xml")
        image_file = os.path.join(root, "JPEGImages", f"{file_id}.jpg")
        if not os.path.isfile(anno_file):
            raise FileNotFoundError(f"Dataset {name!r}: {anno_file} is missing (image id "
                                    f"{file_id!r} is listed in {split_file}).")
        try:
            tree = ET.parse(anno_file)
            width, height = (int(tree.findtext(f"./size/{k}", "0")) for k in ("width", "height"))
        except (ET.ParseError, ValueError) as e:
            raise ValueError(f"Dataset {name!r}: {anno_file} is not valid VOC XML ({e}).") from e
        instances = []
        for obj in tree.findall("object"):
            cls = obj.findtext("name", "").strip()
            if cls not in class_names:
                raise ValueError(
                    f"Dataset {name!r}: {anno_file} has an object of class {cls!r}, which is "
                    f"not in the registered class list {list(class_names)}. Register the "
                    "dataset with every class its annotations use.")
            try:
                x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in
                                  ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError) as e:
                raise ValueError(f"Dataset {name!r}: {anno_file} has a {cls!r} object without "
                                 f"a numeric <bndbox> xmin/ymin/xmax/ymax ({e}).") from e
            if x1 - x0 < 1 or y1 - y0 < 1:
                dropped.append(f"{file_id}: {cls} {[x0, y0, x1, y1]}")
                continue
            # VOC boxes are 1-based inclusive pixel indices; same conversion as Detectron2's
            # load_voc_instances, so PascalVOCDetectionEvaluator scores them consistently.
            instances.append({"category_id": class_names.index(cls),
                              "bbox": [x0 - 1, y0 - 1, x1, y1], "bbox_mode": BoxMode.XYXY_ABS})
        # The image is the pre-flight's to check (and to measure when <size> is absent).
        size = {"height": height, "width": width} if width > 0 and height > 0 else {}
        dicts.append(dict(file_name=image_file, image_id=file_id, **size,
                          annotations=instances))
    if dropped:
        logger.info(f"Dataset {name!r}: dropped {len(dropped)} box(es) with width or height "
                    f"< 1 px: {dropped}")
    return dicts


def register_voc_layout(name: str, root: str, split: str, class_names: Sequence[str],
                        year: int = 2007, replace: bool = True) -> None:
    """A VOC-layout folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt) with any
    class list, evaluated with Detectron2's PascalVOCDetectionEvaluator (`year` 2007 uses
    the 11-point AP, 2012 the area under the curve). `replace` False refuses a name
    another dataset has."""
    if year not in (2007, 2012):
        raise ValueError(f"register_voc_layout({name!r}): year={year}; "
                         "PascalVOCDetectionEvaluator knows 2007 and 2012.")
    twice = sorted({c for c in class_names if list(class_names).count(c) > 1})
    if twice:
        # Its objects would all get the first index; the second would never be trained.
        raise ValueError(f"Dataset {name!r}: the class list {list(class_names)} names "
                         f"{twice} twice; give each class once.")
    root, class_names = os.path.abspath(root), tuple(class_names)
    _register(name, lambda: load_voc_layout(name, root, split, class_names),
              dict(thing_classes=list(class_names), dirname=root, year=year, split=split,
                   evaluator_type="pascal_voc"), replace)


def bccd_root() -> str:
    """$KD_DET_BCCD_ROOT, else $DETECTRON2_DATASETS/BCCD (DETECTRON2_DATASETS: ./datasets)."""
    return os.environ.get("KD_DET_BCCD_ROOT") or os.path.join(
        os.environ.get("DETECTRON2_DATASETS", "datasets"), "BCCD")


def aquarium_root() -> str:
    """$KD_DET_AQUARIUM_ROOT, else $DETECTRON2_DATASETS/aquarium (layout: images/ and
    annotations/instances_<split>.json)."""
    return os.environ.get("KD_DET_AQUARIUM_ROOT") or os.path.join(
        os.environ.get("DETECTRON2_DATASETS", "datasets"), "aquarium")


# ---------------------------------------------------------------------------------------
# Built-in synthetic set


def register_builtin(prefix: str = "kd_builtin", root: Optional[str] = None,
                     spec: BuiltinSpec = BuiltinSpec()) -> None:
    """Register `<prefix>_train` and `<prefix>_val`; the set is generated into `root`
    (default $DETECTRON2_DATASETS/kd_builtin) when either is first loaded."""
    root = os.path.abspath(root or builtin_root())

    def load(split):
        prepare_builtin(root, spec)
        return _load_coco(f"{prefix}_{split}", json_file(split), os.path.join(root, split))

    def json_file(split):
        return os.path.join(root, "annotations", f"instances_{split}.json")

    for split in ("train", "val"):
        _register(f"{prefix}_{split}", lambda split=split: load(split),
                  dict(json_file=json_file(split), image_root=os.path.join(root, split),
                       evaluator_type="coco", thing_classes=list(BUILTIN_CLASSES),
                       builtin_spec=spec))


# ---------------------------------------------------------------------------------------


def register_all() -> None:
    """kd_det's named datasets: kd_builtin_{train,val}, bccd_{train,val,trainval,test} and
    aquarium_{train,val,trainval,test}.

    Paths are read from the environment now; call again after changing
    DETECTRON2_DATASETS, KD_DET_BCCD_ROOT or KD_DET_AQUARIUM_ROOT.
    """
    register_builtin()
    for split in BCCD_SPLITS:
        register_voc_layout(f"bccd_{split}", bccd_root(), split, BCCD_CLASSES)
    root = os.path.abspath(aquarium_root())
    for split in AQUARIUM_SPLITS:
        register_coco_json(f"aquarium_{split}",
                           os.path.join(root, "annotations", f"instances_{split}.json"),
                           os.path.join(root, "images"),
                           metadata={"thing_classes": list(AQUARIUM_CLASSES)})


def use_dataset_root(env: str, path: str = "", shared: str = "") -> str:
    """The root a benchmark reads its set from: `path`, else $`env`, else `shared` when that
    folder exists. It is exported as $`env` (worker processes inherit it) and kd_det's
    datasets are registered again there; '' when there is none."""
    path = path or os.environ.get(env, "") or (shared if shared and os.path.isdir(shared) else "")
    if path:
        os.environ[env] = os.path.abspath(path)
        register_all()
    return path


def replaced_class_names(name: str) -> Optional[list]:
    """The class names dataset `name` had before a registration replaced it (None when it
    was never replaced or had none in its metadata)."""
    return _REPLACED_CLASSES.get(name)


class DatasetNotRegisteredError(KeyError):
    def __str__(self):  # KeyError would print the message in quotes
        return str(self.args[0])


def check_dataset_registered(name: str, key: str = "DATASETS.TRAIN") -> None:
    """Refuse an unknown dataset name, naming the config `key` and the names on offer."""
    registered = DatasetCatalog.list()
    if name in registered:
        return
    close = difflib.get_close_matches(name, registered, n=3)
    raise DatasetNotRegisteredError(
        f"{key}: dataset {name!r} is not registered." +
        (f" Did you mean {close}?" if close else "") +
        f" Registered through kd_det: {sorted(n for n in _KD_DATASETS if n in registered)};"
        " register your own with "
        "kd_det.data.register_coco_json(name, json_file, image_root) or "
        "register_voc_layout(name, root, split, class_names) before training "
        "(see docs/datasets.md).")


def check_voc_evaluable(name: str) -> None:
    """A VOC-layout test set must parse with Detectron2's PASCAL VOC evaluator, which needs
    <pose>, <truncated>, <difficult> and integer <bndbox> coordinates in every object:
    refuse it before training rather than fail at the first evaluation."""
    from detectron2.evaluation.pascal_voc_evaluation import parse_rec

    meta = MetadataCatalog.get(name)
    if meta.get("evaluator_type", "") != "pascal_voc":
        return
    for d in DatasetCatalog.get(name):
        path = os.path.join(meta.dirname, "Annotations", f"{d['image_id']}.xml")
        try:
            parse_rec(path)
        except Exception as e:
            raise ValueError(
                f"DATASETS.TEST: dataset {name!r}: {path} cannot be scored by Detectron2's "
                f"PASCAL VOC evaluator ({type(e).__name__}: {e}); every <object> needs "
                "<name>, <pose>, <truncated>, <difficult> and an integer <bndbox>.") from e


# ---------------------------------------------------------------------------------------
# From the command line


def add_dataset_arguments(parser):
    """--dataset-coco NAME JSON IMAGE_DIR, --dataset-voc NAME DIR SPLIT CLASS[,CLASS...] and
    --dataset-subset NAME SOURCE CLASS[,CLASS...], each repeatable: register a user's data
    for DATASETS.TRAIN / DATASETS.TEST."""
    parser.add_argument("--dataset-coco", nargs=3, action="append", default=[],
                        metavar=("NAME", "JSON", "IMAGE_DIR"),
                        help="register a COCO-json dataset (repeatable)")
    parser.add_argument("--dataset-voc", nargs=4, action="append", default=[],
                        metavar=("NAME", "DIR", "SPLIT", "CLASSES"),
                        help="register a VOC-layout folder; CLASSES comma-separated, in label "
                             "order (repeatable)")
    parser.add_argument("--dataset-subset", nargs=3, action="append", default=[],
                        metavar=("NAME", "SOURCE", "CLASSES"),
                        help="register the images of a registered dataset with only the boxes "
                             "of CLASSES (comma-separated, in the new label order; repeatable)")
    parser.add_argument("--replace-datasets", action="store_true",
                        help="let --dataset-coco / --dataset-voc replace a dataset registered "
                             "under the same name (kd_det's, Detectron2's); refused otherwise")
    return parser


def register_from_arguments(args) -> None:
    """Register the datasets of add_dataset_arguments, checking the paths and names now so
    that a bad one is refused before any model is built, naming the argument. A name
    another dataset has is refused unless --replace-datasets; call this after logging is
    set up, so that the user sees the warning of a replacement."""
    coco, voc = getattr(args, "dataset_coco", []), getattr(args, "dataset_voc", [])
    subsets = getattr(args, "dataset_subset", [])
    names = ([("--dataset-coco", a[0]) for a in coco] + [("--dataset-voc", a[0]) for a in voc]
             + [("--dataset-subset", a[0]) for a in subsets])
    for i, (option, name) in enumerate(names):
        if name in (n for _, n in names[:i]):
            raise ValueError(f"{option} {name}: the name is given twice on the command line; "
                             "give each dataset a name of its own.")
    replace = getattr(args, "replace_datasets", False)
    for name, json_file, image_root in coco:
        for what, path, ok in (("JSON", json_file, os.path.isfile),
                               ("IMAGE_DIR", image_root, os.path.isdir)):
            if not ok(path):
                raise FileNotFoundError(f"--dataset-coco {name}: {what} {path} does not exist.")
        register_coco_json(name, os.path.abspath(json_file), os.path.abspath(image_root),
                           replace=replace)
    for name, root, split, classes in voc:
        split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise FileNotFoundError(f"--dataset-voc {name}: {split_file} does not exist (DIR "
                                    "must hold Annotations/, JPEGImages/, ImageSets/Main/).")
        names = [c.strip() for c in classes.split(",") if c.strip()]
        if not names:
            raise ValueError(f"--dataset-voc {name}: CLASSES is empty; give them comma-separated.")
        register_voc_layout(name, root, split, names, replace=replace)
    for name, source, classes in subsets:  # after the others: a subset may cut one of them
        register_class_subset(name, source, [c.strip() for c in classes.split(",") if c.strip()],
                              replace=replace, key="--dataset-subset")
