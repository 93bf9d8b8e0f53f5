"""Y-channel SR data: random HR patches with bicubic LR for training, whole test images.

LR images are made as in the SR literature: bicubic downscaling (with antialiasing, as
MATLAB's imresize) of the RGB image, then the BT.601 luma (Y) channel in [16, 235]/255.
"""
import logging
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .config import list_images

__all__ = ["SRPatchDataset", "bicubic_downscale", "bicubic_upscale", "load_test_set",
           "load_val_set", "rgb_to_y"]

logger = logging.getLogger(__name__)


def rgb_to_y(rgb: np.ndarray) -> torch.Tensor:
    """BT.601 luma of an (H, W, 3) uint8 image as a (1, H, W) float tensor in [0, 1]."""
    rgb = torch.from_numpy(np.array(rgb, dtype=np.float32))
    y = 16.0 + rgb @ torch.tensor([65.481, 128.553, 24.966]) / 255.0
    return (y / 255.0).unsqueeze(0)


def bicubic_downscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((w // scale, h // scale), Image.BICUBIC))


def bicubic_upscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((w * scale, h * scale), Image.BICUBIC))


def _read_rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


class SRPatchDataset(torch.utils.data.Dataset):
    """Random HR patches (with flips and transposes) of the image `files`, kept in memory
    as uint8 RGB; each item is {"lr": (1, p/s, p/s), "hr": (1, p, p)} Y tensors.

    Crops and flips use torch's global RNG, which the trainer seeds (cfg.SEED).
    """

    def __init__(self, files: Sequence[str], scale: int, patch_size: int,
                 patches_per_image: int = 1, key: str = "SR.DATA.TRAIN_DIR"):
        folder = os.path.dirname(files[0])
        self.images = [_read_rgb(f) for f in tqdm(files, desc=f"reading {folder}", leave=False)]
        small = [os.path.basename(f) for f, im in zip(files, self.images)
                 if min(im.shape[:2]) < patch_size]
        if small:
            raise ValueError(f"{key}: images {small[:5]} are smaller than "
                             f"SR.DATA.PATCH_SIZE={patch_size}; lower the patch size")
        self.scale = scale
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        logger.info("SR train set %s: %d images, %d patches of %d px per pass, x%d",
                    folder, len(files), len(self), patch_size, scale)

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        img = self.images[index % len(self.images)]
        p = self.patch_size
        top = int(torch.randint(img.shape[0] - p + 1, ()))
        left = int(torch.randint(img.shape[1] - p + 1, ()))
        patch = img[top:top + p, left:left + p]
        hflip, vflip, transpose = (torch.rand(3) < 0.5).tolist()
        if hflip:
            patch = patch[:, ::-1]
        if vflip:
            patch = patch[::-1]
        if transpose:
            patch = patch.transpose(1, 0, 2)
        patch = np.ascontiguousarray(patch)
        return {"lr": rgb_to_y(bicubic_downscale(patch, self.scale)), "hr": rgb_to_y(patch)}


def _evaluation_image(path: str, hr: np.ndarray, scale: int) -> Dict:
    lr = bicubic_downscale(hr, scale)
    return {
        "name": os.path.splitext(os.path.basename(path))[0],
        "lr": rgb_to_y(lr),
        "hr": rgb_to_y(hr),
        "bicubic": rgb_to_y(bicubic_upscale(lr, scale)),
    }


def load_test_set(folder: str, scale: int, key: str = "SR.DATA.TEST_DIRS") -> List[Dict]:
    """Whole images cropped to a multiple of `scale`: name, lr, hr and bicubic Y tensors."""
    out = []
    for f in list_images(folder, key):
        rgb = _read_rgb(f)
        h, w = (rgb.shape[0] // scale) * scale, (rgb.shape[1] // scale) * scale
        out.append(_evaluation_image(f, rgb[:h, :w], scale))
    return out


def load_val_set(files: Sequence[str], scale: int, crop: int) -> List[Dict]:
    """The centred HR square of side `crop` of each image (crop 0, or an image too small:
    its largest centred square with a side that is a multiple of `scale`), with name, lr,
    hr and bicubic Y tensors as in load_test_set."""
    out = []
    for f in files:
        rgb = _read_rgb(f)
        side = min(rgb.shape[:2]) // scale * scale
        side = min(side, crop) if crop else side
        top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        out.append(_evaluation_image(f, rgb[top:top + side, left:left + side], scale))
    return out
