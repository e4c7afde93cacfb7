"""Temporal deraining: combine each derained frame with its derained neighbours, aligned by optical flow.

Rain streaks move from frame to frame while the scene mostly stays, so what the network leaves of a streak
in one frame is rarely at the same place of the scene in the next. Each neighbour (``t - radius`` ..
``t + radius``, 3 on each side by default) is warped onto frame ``t`` with OpenCV's DIS optical flow,
computed on the derained frames (the rain would pull the flow along with it). A warped pixel counts only
where the alignment is reliable:

- the forward and backward flows agree (a pixel that goes to the neighbour and back lands where it started;
  occlusions and flow failures do not), and
- the warped neighbour agrees with frame ``t`` after a small blur (the blur hides the thin residual streaks,
  which must not veto anything, but keeps the shape of a misaligned object).

Each pixel is then the median of frame ``t`` and its reliable neighbours; where none is reliable (a moving
object the flow lost) it is frame ``t``'s single-frame result, so moving objects never smear.
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
    pixels; ``colour_tolerance``: blurred difference accepted, on the 0-255 scale; ``blur``: its box side."""

    # Measured on the heavy-rain test clips (docs/video.md): radius 3 beat 2 by 0.26 dB, a colour tolerance of
    # 20 beat 12 by 0.18 dB; a mean instead of the median lost 0.14 dB.
    radius: int = 3
    flow_tolerance: float = 1.0
    colour_tolerance: float = 20.0
    blur: int = 7


def _grey(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


class FlowCache:
    """DIS flows between frames by index, each pair computed once (a frame meets each neighbour twice)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
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
    warped = cv2.remap(neighbour, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    back = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.hypot(forward[..., 0] + back[..., 0], forward[..., 1] + back[..., 1])
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    size = (options.blur, options.blur)
    difference = np.abs(cv2.blur(warped, size).astype(np.float32) - cv2.blur(centre, size).astype(np.float32))
    reliable = inside & (round_trip <= options.flow_tolerance) & (difference.max(axis=2) <= options.colour_tolerance)
    return warped, reliable


def fuse(centre: np.ndarray, neighbours: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per-pixel median of ``centre`` and the reliable pixels of each (warped, mask) neighbour (uint8 RGB)."""
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
    return np.rint((low + high) * 0.5).astype(np.uint8)


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
        return Frame(fuse(centre.pixels, neighbours), centre.pts, centre.index, centre.keep)

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
