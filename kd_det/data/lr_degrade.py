"""Low-resolution degradation: faces (or any image) as a far-away camera would see them.

Wang et al. (ICCV-W 2019) train a low-resolution face recognition student on a set where
a fraction of the images is downscaled to a few pixels (optionally blurred) and resized
back, so that every image keeps the network's input size. The transform works on tensors,
one (C, H, W) image, a list of them (Detectron2's dataset dicts) or an (N, C, H, W) batch.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

__all__ = ["LR_SIZES", "LRDegradation", "down_up"]

LR_SIZES = (8, 12, 16, 20, 30)
Images = Union[torch.Tensor, List[torch.Tensor]]


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3.0 * sigma + 0.5))
    return gaussian_blur(image, [2 * radius + 1] * 2, [sigma, sigma])


def down_up(image: torch.Tensor, size: int, blur_sigma: float = 0.0) -> torch.Tensor:
    """Blur (sigma in input pixels, 0 = none), downscale so that the shorter side is `size`
    pixels (antialiased bilinear), then resize back to the input size (bilinear, which never
    overshoots the input range). A `size` >= the shorter side leaves the image as it is.

    `image` is (C, H, W) or (N, C, H, W); the result has its shape and dtype (integer
    images are rounded and clipped).
    """
    if size < 1:
        raise ValueError(f"LR size must be >= 1 pixel, got {size}")
    h, w = image.shape[-2:]
    if size >= min(h, w):
        return image
    x = image.float()
    if x.dim() == 3:
        x = x[None]
    if blur_sigma > 0:
        x = _blur(x, blur_sigma)
    low = (max(1, round(h * size / min(h, w))), max(1, round(w * size / min(h, w))))
    x = F.interpolate(x, size=low, mode="bilinear", align_corners=False, antialias=True)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = x.reshape(image.shape)
    if not image.dtype.is_floating_point:
        info = torch.iinfo(image.dtype)
        x = x.round().clamp(info.min, info.max)
    return x.to(image.dtype)


class LRDegradation:
    """Each image, independently: with probability `prob`, :func:`down_up` to a size drawn
    uniformly from `sizes`, blurred first with probability `blur_prob` (sigma uniform in
    `blur_sigma`); otherwise unchanged.

    Every image consumes the same four draws from the generator whatever it gets, so the
    choices depend only on the seed and the image's position in the stream.
    """

    def __init__(self, prob: float = 0.4, sizes: Sequence[int] = LR_SIZES,
                 blur_prob: float = 0.0, blur_sigma: Tuple[float, float] = (0.5, 1.5),
                 seed: int = 0):
        if not 0.0 <= prob <= 1.0 or not 0.0 <= blur_prob <= 1.0:
            raise ValueError(f"prob={prob} and blur_prob={blur_prob} must lie in [0, 1]")
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"sizes={tuple(sizes)}: give one or more sizes >= 1 pixel")
        if len(blur_sigma) != 2 or not 0.0 <= blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma={tuple(blur_sigma)}: give (low, high), 0 <= low <= high")
        self.prob, self.sizes = prob, tuple(int(s) for s in sizes)
        self.blur_prob, self.blur_sigma = blur_prob, tuple(float(s) for s in blur_sigma)
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, generator: Optional[torch.Generator] = None) -> Optional[Tuple[int, float]]:
        """(size, blur sigma) for the next image, or None to keep it as it is."""
        u = torch.rand(4, generator=self.generator if generator is None else generator).tolist()
        if u[0] >= self.prob:
            return None
        size = self.sizes[min(int(u[1] * len(self.sizes)), len(self.sizes) - 1)]
        lo, hi = self.blur_sigma
        sigma = lo + (hi - lo) * u[3] if u[2] < self.blur_prob else 0.0
        return size, sigma

    def __call__(self, images: Images, generator: Optional[torch.Generator] = None) -> Images:
        """Degrade one (C, H, W) image, a list of them or an (N, C, H, W) batch."""
        if isinstance(images, torch.Tensor):
            if images.dim() == 3:
                return self([images], generator)[0]
            if images.dim() != 4:
                raise ValueError(f"images of shape {tuple(images.shape)}: give (C, H, W) or "
                                 "(N, C, H, W)")
        out = []
        for image in images:
            choice = self.draw(generator)
            out.append(image if choice is None else down_up(image, *choice))
        return torch.stack(out) if isinstance(images, torch.Tensor) else out
