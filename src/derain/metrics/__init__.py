"""Image-quality metrics: full-reference PSNR/SSIM under named protocols, and no-reference NIQE.

``psnr_ssim(pred, target, protocol)`` is the entry point for tables; ``describe(protocol)`` gives the line
printed under them so that every number says how it was computed. See :mod:`derain.metrics.fullref`.
"""
from derain.metrics.fullref import (
    PROTOCOLS,
    describe,
    psnr,
    psnr_ssim,
    rgb_to_y_matlab,
    ssim_gaussian,
    ssim_skimage,
)
from derain.metrics.niqe import niqe

__all__ = ["PROTOCOLS", "describe", "niqe", "psnr", "psnr_ssim", "rgb_to_y_matlab", "ssim_gaussian",
           "ssim_skimage"]
