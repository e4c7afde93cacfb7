"""The photo queue behind ``derain serve``: one worker thread runs the jobs in arrival order.

One photo at a time, because inference already uses every core (or the GPU); a second worker would only
make both photos slower. A job that fails records its message and the worker goes on with the next one.
Finished jobs keep their result in memory until ``keep`` newer jobs have finished or the page removes them.
Removing a running job cancels it: the worker stops at the next tile and goes on with the next photo.
"""
from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

from derain.data.tensors import image_to_tensor, tensor_to_image
from derain.errors import DerainError
from derain.files.imageio import JpegSettings
from derain.inference.restore import (
    InferenceOptions,
    count_tiles,
    prepare_for,
    resolve_tile,
    resolve_working_side,
    restore,
    set_task,
)
from derain.serve.catalog import ModelChoice
from derain.serve.uploads import UploadInfo, decode_upload, encode_png, encode_preview

FINISHED = ("done", "failed")


class JobCancelled(Exception):
    """Raised inside the worker when the job it runs was removed: unwinds the inference between two tiles."""


@dataclass
class Job:
    """One uploaded photo on its way through the queue."""

    id: str
    filename: str
    model: str
    task: str | None
    info: UploadInfo
    upload: bytes | None  # the compressed upload, dropped once decoded
    state: str = "queued"  # queued, running, done, failed (cancelled: removed while running)
    stage: str = "waiting"  # what a running job is doing, for the page
    tiles_done: int = 0
    tiles_total: int = 0
    error: str | None = None
    seconds: float | None = None
    result: bytes | None = None  # PNG, full resolution
    preview: bytes | None = None  # JPEG of the upright input
    jpeg: JpegSettings | None = None  # the upload's JPEG encoding (tables, subsampling) when it was a JPEG
    internal_error: bool = False  # failed by a bug or a broken model, not by the photo
    cancelled: bool = False  # removed before it finished: skipped if waiting, stopped at the next tile if running
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


class JobQueue:
    """Thread-safe job store plus the worker that restores photos with the models of ``catalog``."""

    def __init__(self, catalog: dict[str, ModelChoice], options: InferenceOptions, device: torch.device,
                 keep: int = 20, log: Callable[[str], None] | None = None) -> None:
        self.catalog = catalog
        # Each network prepared once for the fast path (or the reference path) the options ask for.
        self._models = {key: prepare_for(choice.model, options, device) for key, choice in catalog.items()}
        self._options = {key: resolve_tile(resolve_working_side(options, choice.network), self._models[key],
                                           choice.size_multiple, device)
                         for key, choice in catalog.items()}
        self.options = options
        self.device = device
        self.keep = keep
        self._log = log or (lambda line: None)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._worker: threading.Thread | None = None
        self._current: Job | None = None  # the job the worker runs now

    # --- the page's side -------------------------------------------------------------------------------
    def submit(self, filename: str, model: str, task: str | None, data: bytes, info: UploadInfo) -> Job:
        """Queue a checked upload; returns its job."""
        with self._lock:
            job = Job(id=str(next(self._ids)), filename=filename, model=model, task=task, info=info, upload=data)
            self._jobs[job.id] = job
        self._pending.put(job)
        return job

    def tile(self, model: str) -> int:
        """The tile side photos for ``model`` run in (chosen from the free memory unless set)."""
        tile = self._options[model].tile
        assert tile is not None, "resolve_tile chose the tile side when the pool was made"
        return tile

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def remove(self, job_id: str) -> Job | None:
        """Forget a job and return it (None when unknown). An unfinished one is cancelled (``job.cancelled``): the
        worker skips it if it still waits, and stops at the next tile if it runs."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is not None and job.state not in FINISHED:
                job.cancelled = True
            return job

    def counts(self) -> dict[str, int]:
        """How many jobs are queued, running, done and failed."""
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {state: states.count(state) for state in ("queued", "running", "done", "failed")}

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._worker is not None and self._worker.is_alive()

    def status(self, job: Job) -> dict:
        """A JSON-ready snapshot of ``job``, with its place in the queue while it waits."""
        with self._lock:
            ahead = sum(1 for j in self._jobs.values() if j.state in ("queued", "running") and int(j.id) < int(job.id))
            return {
                "id": job.id, "filename": job.filename, "model": job.model, "task": job.task,
                "state": job.state, "stage": job.stage, "width": job.info.width, "height": job.info.height,
                "tiles_done": job.tiles_done, "tiles_total": job.tiles_total, "error": job.error,
                "seconds": job.seconds, "ahead": ahead if job.state == "queued" else 0,
            }

    def statuses(self) -> list[dict]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [self.status(j) for j in jobs]

    # --- the worker --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="derain-worker", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker after cancelling the photo it runs (waiting queued photos are dropped)."""
        with self._lock:
            if self._current is not None:
                self._current.cancelled = True
        self._pending.put(None)
        if self._worker is not None:
            self._worker.join(timeout=60)
        with self._lock:
            for job in self._jobs.values():
                job.finished.set()  # nobody waits forever for a photo that will not run

    def _work(self) -> None:
        while True:
            job = self._pending.get()
            if job is None:
                return
            if self.get(job.id) is None:  # removed while it waited
                job.finished.set()
                continue
            with self._lock:
                self._current = job
            try:
                self._process(job)
            finally:
                with self._lock:
                    self._current = None
                job.finished.set()
            self._forget_old()

    def _update(self, job: Job, **fields) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(job, name, value)

    def _advance(self, job: Job, tiles: int) -> None:
        """Count finished tiles; called between tiles, it is where a cancelled job stops."""
        with self._lock:
            job.tiles_done += tiles
        self._check_cancelled(job)

    @staticmethod
    def _check_cancelled(job: Job) -> None:
        if job.cancelled:
            raise JobCancelled

    def _process(self, job: Job) -> None:
        start = time.monotonic()
        try:
            choice = self.catalog[job.model]
            self._update(job, state="running", stage="decoding")
            image = decode_upload(job.upload or b"", job.info)
            x = image_to_tensor(image.pixels)
            h, w = x.shape[-2:]
            self._update(job, upload=None, preview=encode_preview(image.pixels), stage="removing rain",
                         tiles_total=count_tiles(h, w, self._options[job.model], choice.size_multiple),
                         jpeg=getattr(image, "jpeg", None))
            self._check_cancelled(job)
            set_task(self._models[job.model], job.model, job.task)  # all-in-one models only
            y = restore(self._models[job.model], x, choice.size_multiple, self._options[job.model], self.device,
                        progress=lambda n: self._advance(job, n))
            self._check_cancelled(job)
            self._update(job, stage="encoding")
            png = encode_png(tensor_to_image(y), image.bit_depth, image.exif, image.icc_profile,
                             image.alpha)
            self._update(job, result=png, state="done", stage="done", seconds=time.monotonic() - start)
            self._log(f"derain: {job.filename}: done in {time.monotonic() - start:.1f} s")
        except JobCancelled:
            self._update(job, state="cancelled", stage="cancelled", upload=None)
            self._log(f"derain: {job.filename}: cancelled after {job.tiles_done} of {job.tiles_total} tile(s)")
        except DerainError as exc:
            self._fail(job, str(exc))
        except MemoryError:
            self._fail(job, "out of memory: the photo is too large for this machine; try a smaller one or "
                            "start the server with a smaller --tile")
        except Exception as exc:  # a bug or a broken model must not stop the queue; keep the traceback
            traceback.print_exc(file=sys.stderr)
            job.internal_error = True
            self._fail(job, f"internal error while processing the photo ({type(exc).__name__}: {exc})")

    def _fail(self, job: Job, message: str) -> None:
        self._update(job, state="failed", stage="failed", error=message, upload=None)
        self._log(f"derain: {job.filename}: failed: {message}")

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond ``keep``, so a long session does not fill the memory."""
        with self._lock:
            finished = [j for j in self._jobs.values() if j.state in FINISHED]
            for job in finished[:max(0, len(finished) - self.keep)]:
                del self._jobs[job.id]
