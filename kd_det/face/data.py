"""Olivetti faces: a fixed identity-stratified split, and the training batches (flips, and
the LR augmentation of the student's copy).

The file is MATLAB v5 with one 64x64 face per column, stored column-major, 40 people x 10
consecutive images; faces are (1, 64, 64) floats in [0, 1] (the BatchNorm after the first
convolution makes a mean/std normalisation unnecessary).
"""
import functools
from typing import Optional, Tuple

import torch

from kd_det.data import LRDegradation

__all__ = ["FaceBatches", "build_degradation", "load_olivetti", "load_split"]

IMAGES_PER_IDENTITY = 10
SIDE = 64


@functools.lru_cache(maxsize=2)
def load_olivetti(path: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(400, 1, 64, 64) upright faces in [0, 1] and their int64 identities (image i: i // 10)."""
    import scipy.io

    try:
        faces = scipy.io.loadmat(path)["faces"]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"FACE.DATA.PATH={path!r} does not exist: give the path of "
                                "olivettifaces.mat") from e
    except (KeyError, ValueError) as e:
        raise ValueError(f"FACE.DATA.PATH={path!r} is not the Olivetti MATLAB file "
                         f"(needs the key 'faces'): {e}") from e
    if faces.ndim != 2 or faces.shape[0] != SIDE * SIDE or faces.shape[1] % IMAGES_PER_IDENTITY:
        raise ValueError(f"FACE.DATA.PATH={path!r}: 'faces' has shape {faces.shape}, expected "
                         f"({SIDE * SIDE}, {IMAGES_PER_IDENTITY} x identities)")
    n = faces.shape[1]
    images = torch.from_numpy(faces.T.reshape(n, SIDE, SIDE).transpose(0, 2, 1).copy())
    labels = torch.arange(n) // IMAGES_PER_IDENTITY
    return images.float().div(255.0).unsqueeze(1), labels


def load_split(cfg, split: str) -> torch.utils.data.TensorDataset:
    """"train" or "test": per identity, FACE.DATA.TEST_PER_IDENTITY images (drawn once with
    FACE.DATA.SPLIT_SEED) are held out and the others train."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = cfg.FACE.DATA
    images, labels = load_olivetti(d.PATH)
    num_ids = len(labels) // IMAGES_PER_IDENTITY
    if num_ids != cfg.FACE.NUM_IDENTITIES:
        raise ValueError(f"FACE.DATA.PATH={d.PATH!r} holds {num_ids} identities but "
                         f"FACE.NUM_IDENTITIES={cfg.FACE.NUM_IDENTITIES}")
    if not 1 <= d.TEST_PER_IDENTITY < IMAGES_PER_IDENTITY:
        raise ValueError(f"FACE.DATA.TEST_PER_IDENTITY={d.TEST_PER_IDENTITY} must lie in "
                         f"1..{IMAGES_PER_IDENTITY - 1}")
    g = torch.Generator().manual_seed(d.SPLIT_SEED)
    orders = torch.stack([torch.randperm(IMAGES_PER_IDENTITY, generator=g)
                          for _ in range(num_ids)])
    held_out = orders[:, :d.TEST_PER_IDENTITY] if split == "test" else \
        orders[:, d.TEST_PER_IDENTITY:]
    idx = (held_out + IMAGES_PER_IDENTITY * torch.arange(num_ids)[:, None]).flatten()
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
