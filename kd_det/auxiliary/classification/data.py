"""Fashion-MNIST from its IDX files (the Debian package dataset-fashion-mnist), read with
numpy, no download: a train/val split of the 60k training images fixed by a seed, and the
official 10k test set for the reported numbers."""
import functools
import gzip
import os
import zlib
from typing import Tuple

import numpy as np
import torch

__all__ = ["FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "load_split", "read_idx", "find_idx"]

FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
_FILES = {"train": "train", "test": "t10k"}
_INSTALL_HINT = (
    "install them with `sudo apt-get install dataset-fashion-mnist` (files under "
    "/usr/share/datasets/fashion-mnist/), or set CLS.DATA.ROOT to a folder holding "
    "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; only unsigned-byte data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except (EOFError, OSError, zlib.error) as e:  # a truncated or corrupt .gz
        raise ValueError(f"{path} cannot be read ({e}): it is truncated or corrupt; copy it "
                         f"again, or {_INSTALL_HINT}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {body.size} values")
    return body.reshape(shape)


def find_idx(root: str, split: str, kind: str) -> str:
    """Path of the `kind` ("images-idx3" / "labels-idx1") file of `split`, gz or not."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CLS.DATA.ROOT={root!r} does not exist: Fashion-MNIST is "
                                f"missing; {_INSTALL_HINT}")
    stem = os.path.join(root, f"{_FILES[split]}-{kind}-ubyte")
    for path in (stem + ".gz", stem):
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"CLS.DATA.ROOT={root!r} has no {os.path.basename(stem)}[.gz]: "
                            f"{_INSTALL_HINT}")


@functools.lru_cache(maxsize=4)
def _read_split(root: str, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(find_idx(root, split, "images-idx3"))
    labels = read_idx(find_idx(root, split, "labels-idx1"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"CLS.DATA.ROOT={root!r}: {split} images {images.shape} and labels "
                         f"{labels.shape} do not match")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD).unsqueeze(1)


def load_split(cfg, split: str) -> torch.utils.data.TensorDataset:
    """"train", "val" (disjoint, from the 60k training images, fixed by CLS.DATA.SPLIT_SEED)
    or "test" (the official 10k); (N, 1, 28, 28) normalised images and int64 labels."""
    d = cfg.CLS.DATA
    if split == "test":
        images, labels = _read_split(d.ROOT, "test")
        n = d.TEST_SIZE or len(images)
        _check_labels(labels[:n], cfg, "test")
        return torch.utils.data.TensorDataset(_normalize(images[:n]), labels[:n])
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    images, labels = _read_split(d.ROOT, "train")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(d.SPLIT_SEED))
    if split == "val":
        idx = order[:d.VAL_SIZE]
    else:
        rest = order[d.VAL_SIZE:]
        idx = rest[:d.TRAIN_SIZE] if d.TRAIN_SIZE else rest
    _check_labels(labels[idx], cfg, "train")
    return torch.utils.data.TensorDataset(_normalize(images[idx]), labels[idx])


def _check_labels(labels: torch.Tensor, cfg, split: str) -> None:
    """A label outside 0..CLS.NUM_CLASSES-1 is refused, naming its file: in the test set
    it would otherwise be scored as a miss."""
    n = cfg.CLS.NUM_CLASSES
    bad = (labels >= n).nonzero()
    if len(bad):
        path = find_idx(cfg.CLS.DATA.ROOT, split, "labels-idx1")
        raise ValueError(f"{path}: label {int(labels[bad[0, 0]])} (and {len(bad) - 1} more) is "
                         f"outside 0..{n - 1} (CLS.NUM_CLASSES={n}); set CLS.NUM_CLASSES or "
                         "fix the labels file.")
