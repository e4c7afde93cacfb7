"""Rainy test clips with ground truth: a slow pan and zoom over a clean photo, optionally a textured object
moving across it, and synthetic rain (:mod:`derain.data.synth`) that falls anew in every frame.

The rain's parameters (density, angle, streak size, veil) are drawn once per clip from the preset's ranges,
so the clip looks like one shower; only where the streaks fall changes from frame to frame. Frames are uint8
RGB arrays; :mod:`derain.video.streams` users write them to a file.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from derain.data.synth import RainConfig, preset, synthesize
from derain.data.tensors import image_to_tensor, quantize, tensor_to_images


@dataclass(frozen=True)
class ClipSpec:
    """A synthetic clip: ``frames`` of ``width`` x ``height``; ``pan`` and ``zoom``: the camera's travel over the
    whole clip (fraction of the photo's width, and final magnification); ``moving_object``: a textured disc
    crossing the frame at ``object_speed`` pixels per frame."""

    frames: int = 32
    width: int = 320
    height: int = 240
    preset: str = "heavy"
    seed: int = 0
    pan: float = 0.12
    zoom: float = 1.08
    moving_object: bool = True
    object_speed: float = 5.0


def clip_rain_config(config: RainConfig, generator: torch.Generator) -> RainConfig:
    """``config`` with every range collapsed to one value drawn from it: the same shower in every frame."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple) and len(value) == 2:
            u = float(torch.rand((), generator=generator))
            if f.name in ("density", "near_density"):  # drawn log-uniformly, as synth does
                v = math.exp(math.log(value[0]) + u * (math.log(value[1]) - math.log(value[0])))
            else:
                v = value[0] + u * (value[1] - value[0])
            changes[f.name] = (v, v)
    for name in ("veil_probability", "near_probability", "light_probability", "noise_probability",
                 "jpeg_probability"):
        changes[name] = 1.0 if float(torch.rand((), generator=generator)) < getattr(config, name) else 0.0
    changes["night_probability"] = 0.0  # a night scene changes the target; the clips stay daylight
    return dataclasses.replace(config, **changes)


def _fit_photo(photo: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """``photo`` scaled (area filter, no aliasing) so that a ``width`` x ``height`` view covers ``margin`` of it."""
    scale = max(width * margin / photo.shape[1], height * margin / photo.shape[0])
    size = (max(width, round(photo.shape[1] * scale)), max(height, round(photo.shape[0] * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)


def _disc(texture: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(a round textured patch of side 2 * radius + 1, its soft-edged alpha)."""
    side = 2 * radius + 1
    patch = cv2.resize(texture, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    ys, xs = np.mgrid[0:side, 0:side] - radius
    alpha = np.clip(radius + 0.5 - np.hypot(xs, ys), 0.0, 1.0).astype(np.float32)[..., None]
    return patch, alpha


def clean_frames(photo: np.ndarray, spec: ClipSpec, texture: np.ndarray | None = None) -> list[np.ndarray]:
    """The clip's rain-free frames (uint8 H x W x 3): the camera pans right and zooms in over ``photo``; the
    moving object (a disc cut from ``texture``, default the photo's mirror) crosses from left to right."""
    big = _fit_photo(photo, spec.width, spec.height, 1.0 + spec.pan + 0.05)
    frames = []
    n = max(1, spec.frames - 1)
    disc, alpha = _disc(texture if texture is not None else photo[:, ::-1], radius=spec.height // 8)
    for t in range(spec.frames):
        s = t / n
        zoom = 1.0 + (spec.zoom - 1.0) * s
        x0 = 0.025 * big.shape[1] + spec.pan * big.shape[1] * s
        y0 = (big.shape[0] - spec.height / zoom) / 2
        # output pixel (u, v) shows photo pixel (x0 + u / zoom, y0 + v / zoom)
        matrix = np.array([[zoom, 0.0, -x0 * zoom], [0.0, zoom, -y0 * zoom]], dtype=np.float32)
        frame = cv2.warpAffine(big, matrix, (spec.width, spec.height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        if spec.moving_object:
            cx, cy = object_centre(spec, t)
            _paste(frame, disc, alpha, cx, cy)
        frames.append(frame)
    return frames


def object_centre(spec: ClipSpec, t: int) -> tuple[int, int]:
    """Where the moving disc's centre is in frame ``t`` (x, y in pixels; its radius is ``spec.height // 8``)."""
    radius = spec.height // 8
    return (round(-radius + spec.object_speed * t),
            round(spec.height * 0.55 + spec.height * 0.08 * math.sin(t / 4)))


def object_mask(spec: ClipSpec, t: int, border: int = 2) -> np.ndarray:
    """H x W bool mask of the moving disc in frame ``t`` and ``border`` pixels around it (its edge included)."""
    cx, cy = object_centre(spec, t)
    ys, xs = np.mgrid[0:spec.height, 0:spec.width]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= (spec.height // 8 + border) ** 2


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, cx: int, cy: int) -> None:
    """Blend ``patch`` centred at (cx, cy) into ``frame``, clipped at the borders."""
    r = patch.shape[0] // 2
    h, w = frame.shape[:2]
    top, left, bottom, right = max(0, cy - r), max(0, cx - r), min(h, cy + r + 1), min(w, cx + r + 1)
    if top >= bottom or left >= right:
        return
    p = patch[top - (cy - r):bottom - (cy - r), left - (cx - r):right - (cx - r)]
    a = alpha[top - (cy - r):bottom - (cy - r), left - (cx - r):right - (cx - r)]
    region = frame[top:bottom, left:right].astype(np.float32)
    frame[top:bottom, left:right] = np.rint(region * (1 - a) + p * a).astype(np.uint8)


def add_rain(frames: list[np.ndarray], spec: ClipSpec, chunk: int = 8) -> list[np.ndarray]:
    """``frames`` with the clip's rain, new streaks in every frame (same seed, same clip)."""
    generator = torch.Generator().manual_seed(spec.seed)
    config = clip_rain_config(preset(spec.preset), generator)
    rainy: list[np.ndarray] = []
    for i in range(0, len(frames), chunk):  # a few frames at a time: the FFT buffers grow with the batch
        batch = image_to_tensor(np.stack(frames[i:i + chunk]))
        out = synthesize(batch, config, generator, wrap=False)  # already in [0, 1]: quantize's clamp is a no-op
        rainy.extend(tensor_to_images(quantize(out)))
    return rainy


def make_clip(photo: np.ndarray, spec: ClipSpec, texture: np.ndarray | None = None
              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(rainy frames, clean frames) of the clip ``spec`` over ``photo`` (uint8 RGB)."""
    clean = clean_frames(photo, spec, texture)
    return add_rain(clean, spec), clean
