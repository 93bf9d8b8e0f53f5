"""Olivetti faces: a fixed identity-stratified train / validation / test split, and the
training batches (flips, and the LR augmentation of the student's copy).

The file is MATLAB v5 with one 64x64 face per column, stored column-major, 40 people x 10
consecutive images; faces are (1, 64, 64) floats in [0, 1] (the BatchNorm after the first
convolution makes a mean/std normalisation unnecessary).
"""
import functools
from typing import Optional, Tuple

import torch

from kd_det.data import LRDegradation

__all__ = ["SPLITS", "FaceBatches", "build_degradation", "load_olivetti", "load_split"]

IMAGES_PER_IDENTITY = 10
SIDE = 64
SPLITS = ("train", "val", "test")


@functools.lru_cache(maxsize=2)
def load_olivetti(path: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(400, 1, 64, 64) upright faces in [0, 1] and their int64 identities (image i: i // 10)."""
    import scipy.io

    try:
        faces = scipy.io.loadmat(path)["faces"]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"FACE.DATA.PATH={path!r} does not exist: give the path of "
                                "olivettifaces.mat") from e
    except Exception as e:  # scipy's errors for a truncated or text file name nothing
        raise ValueError(f"FACE.DATA.PATH={path!r} is not a readable Olivetti MATLAB file "
                         f"(a truncated copy, or another format; it needs the key 'faces'): "
                         f"{type(e).__name__}: {e}") from e
    if faces.ndim != 2 or faces.shape[0] != SIDE * SIDE or faces.shape[1] % IMAGES_PER_IDENTITY:
        raise ValueError(f"FACE.DATA.PATH={path!r}: 'faces' has shape {faces.shape}, expected "
                         f"({SIDE * SIDE}, {IMAGES_PER_IDENTITY} x identities)")
    n = faces.shape[1]
    images = torch.from_numpy(faces.T.reshape(n, SIDE, SIDE).transpose(0, 2, 1).copy())
    labels = torch.arange(n) // IMAGES_PER_IDENTITY
    return images.float().div(255.0).unsqueeze(1), labels


def load_split(cfg, split: str) -> torch.utils.data.TensorDataset:
    """"train", "val" or "test": each identity's images are put in an order drawn once with
    FACE.DATA.SPLIT_SEED; the first FACE.DATA.TEST_PER_IDENTITY are held out for testing,
    the next FACE.DATA.VAL_PER_IDENTITY for validation, and the others train (so the test
    faces do not depend on the size of the validation split)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d = cfg.FACE.DATA
    images, labels = load_olivetti(d.PATH)
    num_ids = len(labels) // IMAGES_PER_IDENTITY
    if num_ids != cfg.FACE.NUM_IDENTITIES:
        raise ValueError(f"FACE.DATA.PATH={d.PATH!r} holds {num_ids} identities but "
                         f"FACE.NUM_IDENTITIES={cfg.FACE.NUM_IDENTITIES}")
    n_test, n_val = d.TEST_PER_IDENTITY, d.VAL_PER_IDENTITY
    if n_test < 1 or n_val < 0 or n_test + n_val >= IMAGES_PER_IDENTITY:
        raise ValueError(f"FACE.DATA.TEST_PER_IDENTITY={n_test} (>= 1) and "
                         f"FACE.DATA.VAL_PER_IDENTITY={n_val} (>= 0) must leave at least one "
                         f"of the {IMAGES_PER_IDENTITY} images of each identity to train")
    g = torch.Generator().manual_seed(d.SPLIT_SEED)
    orders = torch.stack([torch.randperm(IMAGES_PER_IDENTITY, generator=g)
                          for _ in range(num_ids)])
    bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val),
              "train": (n_test + n_val, IMAGES_PER_IDENTITY)}[split]
    if bounds[0] == bounds[1]:
        raise ValueError(f"no {split!r} split: FACE.DATA.VAL_PER_IDENTITY is 0")
    idx = (orders[:, bounds[0]:bounds[1]]
           + IMAGES_PER_IDENTITY * torch.arange(num_ids)[:, None]).flatten()
    return torch.utils.data.TensorDataset(images[idx], labels[idx])


def build_degradation(cfg) -> Optional[LRDegradation]:
    """The LR augmentation of FACE.LR, or None when it is off."""
    lr = cfg.FACE.LR
    if not lr.ENABLED:
        return None
    return LRDegradation(lr.PROB, lr.SIZES, lr.BLUR_PROB, lr.BLUR_SIGMA)


class FaceBatches:
    """(faces, identities) batches -> {"hr": flipped faces, "image": their LR-augmented
    copy, "label"}.

    Flips and degradations are drawn in the main process from one generator seeded with
    `seed`, so the batches depend on the seed only, not on the number of loader workers.
    """

    def __init__(self, loader, seed: int, flip: bool = True,
                 degrade: Optional[LRDegradation] = None):
        self.loader, self.seed, self.flip, self.degrade = loader, seed, flip, degrade

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for faces, labels in self.loader:
            if self.flip:
                mask = torch.rand(len(faces), generator=g) < 0.5
                faces = torch.where(mask[:, None, None, None], faces.flip(-1), faces)
            image = faces if self.degrade is None else self.degrade(faces, g)
            yield {"hr": faces, "image": image, "label": labels}
