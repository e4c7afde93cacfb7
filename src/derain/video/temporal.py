"""Temporal deraining: combine each derained frame with its derained neighbours, aligned by optical flow.

Rain streaks move from frame to frame while the scene mostly stays, so what the network leaves of a streak
in one frame is rarely at the same place of the scene in the next. Each neighbour (``t - radius`` ..
``t + radius``, 5 on each side by default) is warped onto frame ``t`` (bicubic) with OpenCV's DIS optical
flow, computed on the derained frames (the rain would pull the flow along with it). A warped pixel counts only
where the alignment is reliable:

- the forward and backward flows agree (a pixel that goes to the neighbour and back lands where it started;
  occlusions and flow failures do not), a few pixels away from any pixel where they do not, and
- the warped neighbour agrees with frame ``t`` after a small blur (the blur hides the thin residual streaks,
  which must not veto anything, but keeps the shape of a misaligned object).

Each pixel is then the median of frame ``t`` and its reliable neighbours; where none is reliable (a moving
object the flow lost) it is frame ``t``'s single-frame result, so moving objects never smear. Where the median
is close to frame ``t``'s own pixel, the pixel is kept (a warped neighbour is a little softer); only where it
stands out from its neighbours (a leftover streak) does the median replace it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from derain.video.streams import Frame


@dataclass(frozen=True)
class TemporalOptions:
    """``radius``: neighbours used on each side; ``flow_tolerance``: forward-backward disagreement accepted, in
    pixels; ``flow_margin``: side of the square by which the pixels failing that check are widened;
    ``colour_tolerance``: blurred difference accepted, on the 0-255 scale; ``blur``: its box side;
    ``keep_below``/``replace_above``: see :func:`fuse`; ``interpolation``: how neighbours are warped."""

    # Measured on the synthetic test clips (docs/video.md, 2026-12-07; gain over single-frame, heavy / light
    # rain): the former radius 3, tolerance 20, blur 7 with a bilinear warp +0.67 / -0.21 dB; the cubic warp
    # alone +0.84 / +1.23 dB; radius 5 and tolerance 30 +1.09 / +1.56 dB; blur 5 and the flow check widened by
    # 9 pixels +1.06 / +1.83 dB with less error on the moving object (by 5: +1.07 / +1.75 dB; the colour check
    # widened instead: +0.96 / +1.73 dB). Averaging the samples near the median,
    # or dropping samples brighter than it (rain adds light), lost 0.1-0.8 dB against the plain median.
    # Keeping the frame's own pixel where the median is within 2 of it, and the median from 8 on, changed the
    # gain to +0.97 / +2.21 dB and the flicker cut from 43% / 18% to 39% / 29% (on 3 other clips of each:
    # +2.06 / +1.73 dB against +2.00 / +1.02 dB, flicker cut 32% / 12% against 34% / -21%).
    radius: int = 5
    flow_tolerance: float = 1.0
    flow_margin: int = 9
    colour_tolerance: float = 30.0
    blur: int = 5
    keep_below: float = 2.0
    replace_above: float = 8.0
    interpolation: str = "cubic"  # or "linear" (bilinear)


def _grey(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


class FlowCache:
    """DIS flows between frames by index, each pair computed once (a frame meets each neighbour twice)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]  # cv2 stubs lack it
        self._flows: dict[tuple[int, int], np.ndarray] = {}

    def flow(self, a: int, b: int, greys: dict[int, np.ndarray]) -> np.ndarray:
        """Flow from frame ``a`` to frame ``b``: pixel ``x`` of ``a`` shows what ``b`` shows at ``x + flow``."""
        key = (a, b)
        if key not in self._flows:
            self._flows[key] = self._dis.calc(greys[a], greys[b], None)
        return self._flows[key]

    def forget_before(self, index: int) -> None:
        """Drop the flows of frames before ``index`` (they will not be asked for again)."""
        for key in [k for k in self._flows if min(k) < index]:
            del self._flows[key]


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def aligned_neighbour(centre: np.ndarray, neighbour: np.ndarray, forward: np.ndarray, backward: np.ndarray,
                      options: TemporalOptions) -> tuple[np.ndarray, np.ndarray]:
    """(``neighbour`` warped onto ``centre``, H x W mask of the pixels where that warp is reliable)."""
    h, w = centre.shape[:2]
    xs, ys = _grid(h, w)
    map_x, map_y = xs + forward[..., 0], ys + forward[..., 1]
    # Cubic, not bilinear: a sub-pixel shift with bilinear weights blurs the neighbour, and the median of
    # blurred neighbours lost detail (0.17 dB in heavy rain on the test clips, radius 3).
    interpolation = cv2.INTER_LINEAR if options.interpolation == "linear" else cv2.INTER_CUBIC
    warped = cv2.remap(neighbour, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
    back = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.hypot(forward[..., 0] + back[..., 0], forward[..., 1] + back[..., 1])
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    size = (options.blur, options.blur)
    difference = np.abs(cv2.blur(warped, size).astype(np.float32) - cv2.blur(centre, size).astype(np.float32))
    consistent = round_trip <= options.flow_tolerance
    if options.flow_margin > 1:
        # The flow is smoothed across the edge of a moving object, so the pixels just outside an occlusion
        # pass the round trip while showing the object's edge: widen what fails it by a few pixels.
        kernel = np.ones((options.flow_margin, options.flow_margin), np.uint8)
        consistent = cv2.erode(consistent.astype(np.uint8), kernel).astype(bool)
    # The colour check is not widened: it fails around every leftover streak, which must not veto more.
    reliable = inside & consistent & (difference.max(axis=2) <= options.colour_tolerance)
    return warped, reliable


def fuse(centre: np.ndarray, neighbours: list[tuple[np.ndarray, np.ndarray]], keep_below: float = 0.0,
         replace_above: float = 0.0) -> np.ndarray:
    """Per-pixel median of ``centre`` and the reliable pixels of each (warped, mask) neighbour (uint8 RGB); of
    two middle samples, the one nearer ``centre``. Where ``centre`` differs from that median by at most
    ``keep_below`` (0-255, largest over the channels) it is kept, from ``replace_above`` on the median replaces
    it, and in between the two are blended linearly."""
    if not neighbours:
        return centre
    stack = np.empty((len(neighbours) + 1,) + centre.shape, dtype=np.float32)
    stack[0] = centre
    for k, (warped, mask) in enumerate(neighbours, start=1):
        stack[k] = warped
        stack[k][~mask] = np.nan
    # Median of the valid samples: sorting puts NaNs last, so the median sits at (count - 1) / 2.
    count = (~np.isnan(stack[:, ..., :1])).sum(axis=0)  # H x W x 1, at least 1 (the centre)
    stack.sort(axis=0)
    low = np.take_along_axis(stack, ((count - 1) // 2)[None], axis=0)[0]
    high = np.take_along_axis(stack, (count // 2)[None], axis=0)[0]
    # An even count has two middle samples: take the one nearer the centre frame's own value rather than their
    # mean, so that with one reliable neighbour a misaligned one cannot pull a pixel half-way: the sharp edge of
    # a moving object keeps its colour (tests/test_video.py). On the test clips: -0.04 dB in heavy rain, +0.10
    # dB in light rain, and the moving object closer to the clean one than single-frame in both.
    centre_value = centre.astype(np.float32)
    middle = np.where(np.abs(low - centre_value) <= np.abs(high - centre_value), low, high)
    if replace_above > keep_below:
        # Where the neighbours agree with the frame, the frame's own pixel is the better one: a warped neighbour
        # is resampled (softer), and switching between samples from frame to frame is flicker of its own.
        distance = np.abs(middle - centre_value).max(axis=2, keepdims=True)
        weight = np.clip((distance - keep_below) / (replace_above - keep_below), 0.0, 1.0)
        middle = centre_value + (middle - centre_value) * weight
    return np.rint(middle).astype(np.uint8)


def temporal_filter(frames: Iterable[Frame], options: TemporalOptions = TemporalOptions()) -> Iterator[Frame]:
    """Yield each derained frame of ``frames`` combined with its aligned neighbours, ``radius`` frames late.

    The window is cut at the ends of the clip (the first frame has only later neighbours).
    """
    radius = options.radius
    window: deque[Frame] = deque()
    greys: dict[int, np.ndarray] = {}
    flows = FlowCache()

    def combine(centre: Frame) -> Frame:
        neighbours = []
        for other in window:
            if other.index == centre.index:
                continue
            forward = flows.flow(centre.index, other.index, greys)
            backward = flows.flow(other.index, centre.index, greys)
            neighbours.append(aligned_neighbour(centre.pixels, other.pixels, forward, backward, options))
        pixels = fuse(centre.pixels, neighbours, options.keep_below, options.replace_above)
        return Frame(pixels, centre.pts, centre.index, centre.keep)

    pending: deque[Frame] = deque()  # frames read but not yet written, oldest first
    for frame in frames:
        greys[frame.index] = _grey(frame.pixels)
        window.append(frame)
        pending.append(frame)
        if len(pending) > radius:  # the oldest pending frame now has all its later neighbours
            centre = pending.popleft()
            while window[0].index < centre.index - radius:
                del greys[window.popleft().index]
            flows.forget_before(centre.index - radius)
            yield combine(centre)
    while pending:
        centre = pending.popleft()
        while window and window[0].index < centre.index - radius:
            del greys[window.popleft().index]
        yield combine(centre)
