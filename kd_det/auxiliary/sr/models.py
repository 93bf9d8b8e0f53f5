"""FSRCNN, the PISR teacher (an encoder that sees HR + an FSRCNN decoder) and VID heads.

Every model takes a batch dict {"lr": (N,1,h,w), "hr": (N,1,h*s,w*s)} of Y-channel images
in [0, 1]; in training it returns a dict of losses, in eval the SR image.
"""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from kd_det.losses import (
    gaussian_variance_logit,
    pisr_teacher_loss,
    vid_gaussian_loss,
    vid_laplace_loss,
)

__all__ = ["FSRCNN", "PISREncoder", "PISRTeacher", "SRBaseline", "VIDHead",
           "build_fsrcnn", "build_teacher"]


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _init_convs(module: nn.Module) -> None:
    """He-normal convolutions, zero biases (as the FSRCNN re-implementations do)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)


def _centred_padding(scale: int, k: int) -> int:
    """Padding of a k x k stride-`scale` convolution (LR <- HR) or transposed convolution
    (HR <- LR) whose kernel is centred where bicubic downscaling puts LR pixel i: on HR
    pixel i*scale + (scale-1)/2 (exact at x3, half a pixel off at x2 and x4). The usual
    k//2 centres it on HR pixel i*scale, one pixel off at x3 and 1.5 at x4: a shift the
    kernels must learn to undo, and which the PISR encoder would pass on to the student."""
    return k // 2 - (scale - 1) // 2


class FSRCNN(nn.Module):
    """Dong et al. 2016: feature 5x5(d) - shrink 1x1(s) - m x map 3x3(s) - expand 1x1(d)
    - deconv 9x9 stride=scale. One PReLU slope per layer: 12,644 parameters at d=56,
    s=12, m=4 whatever the scale (the deconvolution kernel does not depend on it).

    Input and output are shifted by a fixed `pixel_mean` (as EDSR's MeanShift): otherwise
    Adam spends its first ~500 steps moving the output bias to the image mean. With
    `residual`, the network adds its output to the bicubic upscaling of its input instead
    (VDSR's global skip, no parameter): it starts at bicubic quality and learns only the
    missing detail, where plain FSRCNN must first learn interpolation itself (thousands of
    CPU steps below bicubic).
    """

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4, channels: int = 1,
                 pixel_mean: float = 0.5, residual: bool = False):
        super().__init__()
        self.scale = scale
        self.pixel_mean = pixel_mean
        self.residual = residual
        self.feature = nn.Sequential(_conv(channels, d, 5), nn.PReLU())
        self.shrink = nn.Sequential(_conv(d, s, 1), nn.PReLU())
        self.map = nn.Sequential(*[layer for _ in range(m)
                                   for layer in (_conv(s, s, 3), nn.PReLU())])
        self.expand = nn.Sequential(_conv(s, d, 1), nn.PReLU())
        pad = _centred_padding(scale, 9)
        self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=pad,
                                         output_padding=scale + 2 * pad - 9)
        _init_convs(self)
        nn.init.normal_(self.deconv.weight, std=1e-3)
        nn.init.zeros_(self.deconv.bias)

    @property
    def feature_channels(self) -> int:
        return self.expand[0].out_channels

    def forward_with_feature(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """SR image and the 'expanding' feature that PISR distils."""
        feat = self.expand(self.map(self.shrink(self.feature(x - self.pixel_mean))))
        if self.residual:
            base = F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                 align_corners=False)
        else:
            base = self.pixel_mean
        return self.deconv(feat) + base, feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_feature(x)[0]


class PISREncoder(nn.Module):
    """conv5x5 - conv5x5 stride=scale - conv3x3 - conv3x3: HR image -> LR-size image on
    the real LR image's pixel grid (with the same fixed mean shift as FSRCNN). With
    `residual` the output is added to the antialiased bicubic downscaling of the HR image
    (as the real LR is made): the encoder starts as the real degradation and learns what
    to add to it."""

    def __init__(self, scale: int, width: int = 56, channels: int = 1, pixel_mean: float = 0.5,
                 residual: bool = False):
        super().__init__()
        self.scale = scale
        self.pixel_mean = pixel_mean
        self.residual = residual
        self.body = nn.Sequential(
            _conv(channels, width, 5), nn.PReLU(),
            nn.Conv2d(width, width, 5, stride=scale, padding=_centred_padding(scale, 5)),
            nn.PReLU(),
            _conv(width, width, 3), nn.PReLU(),
            _conv(width, channels, 3),
        )
        _init_convs(self)
        if residual:  # start exactly at the downscaling, as FSRCNN's deconvolution does
            nn.init.normal_(self.body[-1].weight, std=1e-3)

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {self.scale}")
        if self.residual:
            base = F.interpolate(hr, scale_factor=1 / self.scale, mode="bicubic",
                                 antialias=True, align_corners=False)
        else:
            base = self.pixel_mean
        return self.body(hr - self.pixel_mean) + base


class SRBaseline(nn.Module):
    """Plain FSRCNN trained with L1: the baseline that PISR is compared with."""

    def __init__(self, net: FSRCNN):
        super().__init__()
        self.net = net

    def sr_network(self) -> nn.Module:
        """The weights that make the SR image (for per-loss gradient norms)."""
        return self.net

    def forward(self, batch: Dict[str, torch.Tensor]):
        sr = self.net(batch["lr"])
        if not self.training:
            return sr
        return {"loss_rec": F.l1_loss(sr, batch["hr"])}


class PISRTeacher(nn.Module):
    """PISR step 1: decoder(encoder(HR)) reconstructs HR; the encoder output imitates LR.

    It sees the HR image (privileged information), so its PSNR is an upper reference,
    not a competitor.
    """

    def __init__(self, encoder: PISREncoder, decoder: FSRCNN, imitation_weight: float = 1e-4):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.imitation_weight = imitation_weight

    def sr_network(self) -> nn.Module:
        """Encoder and decoder both make the SR image."""
        return self

    def forward_with_feature(self, hr: torch.Tensor):
        """(SR image, encoder output, decoder 'expanding' feature)."""
        encoded = self.encoder(hr)
        sr, feat = self.decoder.forward_with_feature(encoded)
        return sr, encoded, feat

    def forward(self, batch: Dict[str, torch.Tensor]):
        sr, encoded, _ = self.forward_with_feature(batch["hr"])
        if not self.training:
            return sr
        return pisr_teacher_loss(sr, batch["hr"], encoded, batch["lr"], self.imitation_weight)


class VIDHead(nn.Module):
    """Predicts the teacher feature's distribution from the student feature.

    laplace (PISR): two 1x1-conv heads give mu and the scale b per channel and pixel.
    gaussian (Ahn et al.): a 1x1-conv head gives mu; one learned variance per channel.
    """

    def __init__(self, channels: int, form: str = "laplace", laplace_scale_factor: float = 0.1,
                 gaussian_init_var: float = 5.0):
        super().__init__()
        self.form = form
        self.laplace_scale_factor = laplace_scale_factor
        self.mean = self._head(channels)
        if form == "laplace":
            self.scale = self._head(channels)
        elif form == "gaussian":
            self.alpha = nn.Parameter(
                torch.full((channels,), gaussian_variance_logit(gaussian_init_var)))
        else:
            raise ValueError(f"VID form {form!r}: use 'laplace' or 'gaussian' (SR.KD.VID_FORM)")
        _init_convs(self)

    @staticmethod
    def _head(channels: int) -> nn.Sequential:
        return nn.Sequential(_conv(channels, channels, 1), nn.PReLU(), _conv(channels, channels, 1))

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        mean = self.mean(student_feat)
        if self.form == "laplace":
            return vid_laplace_loss(mean, self.scale(student_feat), teacher_feat,
                                    scale_factor=self.laplace_scale_factor)
        return vid_gaussian_loss(mean, self.alpha, teacher_feat)


def build_fsrcnn(cfg) -> FSRCNN:
    f = cfg.SR.FSRCNN
    return FSRCNN(cfg.SR.SCALE, d=f.D, s=f.S, m=f.M, residual=cfg.SR.RESIDUAL)


def build_teacher(cfg) -> PISRTeacher:
    return PISRTeacher(PISREncoder(cfg.SR.SCALE, cfg.SR.TEACHER.ENCODER_WIDTH,
                                   residual=cfg.SR.RESIDUAL),
                       build_fsrcnn(cfg), cfg.SR.TEACHER.IMITATION_WEIGHT)
