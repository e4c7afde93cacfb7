"""Rainy video: ``derain video IN -o OUT``, streamed with PyAV, sound kept, rain removed with the frames around
each frame.

- :mod:`derain.video.streams`: probe, decode, encode, copy audio/subtitles (PyAV, the ``video`` extra);
- :mod:`derain.video.temporal`: neighbours aligned with DIS optical flow and combined where reliable;
- :mod:`derain.video.job`: the command's job (:class:`VideoJob`, :func:`derain_video`);
- :mod:`derain.video.synthclip` and :mod:`derain.video.score`: rainy test clips with ground truth, and their
  scores (PSNR/SSIM per frame, flicker).

PyAV is imported only when a video is read or written, so ``import derain.video`` works without it.
"""
from derain.video.job import VideoJob, VideoReport, derain_video

__all__ = ["VideoJob", "VideoReport", "derain_video"]
