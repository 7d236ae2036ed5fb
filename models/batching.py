"""Cross-request batching: concurrent callers of one model share forward passes.

A CNN pass over 8 images costs about half as much as 8 passes over one image (bench-cnn: the
kernels use the cores better and per-call overhead is paid once), so when several web requests want
the same model at the same moment, their images are concatenated and run together; and for every
model the queue decides who goes next, which is how small requests stay fast under load. There is no timer: whichever
caller finds the model idle becomes the *leader*: it takes the waiting jobs (smallest first, up to
`max_images`; a job overtaken for longer than `max_overtaken_seconds` goes first), has the pass run,
hands each job its rows, and repeats until its own job is done; then it steps down and a waiting
caller takes over. A caller that arrives while a pass is running therefore waits for that pass and
for the smaller jobs queued with it, then runs with them.

One pass runs at a time per model (the model never splits the cores with itself), which is also
what keeps frameworks that are not thread-safe (a TFLite interpreter) safe; and every pass runs on
the same thread. That matters for memory: OpenMP gives each calling thread its own team of workers
and oneDNN its own scratch buffers, so passes from 16 different request threads kept ~100 MB more
resident than passes from one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class _Job:
    batch: np.ndarray
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False
    order: int = 0
    arrived: float = 0.0


class CoalescingRunner:
    """Run `forward(batch) -> rows` for many threads, merging the batches that wait at the same time."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_images: int = 64, name: str = "model",
                 max_overtaken_seconds: float = 2.0, slice_images: int = 8):
        self._forward = forward
        self.max_images = max_images
        # A larger batch (an evaluation's chunk, a 32-image comparison) queues as slices of this many, one after
        # the other, so a one-image request waits for one slice's pass, not the whole batch's: a pass over 64
        # images took 1 s on the 2-core machine and a user's photo waited for it (bench/bench_soak.py); under the
        # mixed flood a 16-image slice of the Custom CNN (96 test-time views) still cost the person most of a second.
        self.slice_images = slice_images
        # Small jobs (a person's one or few images) share passes only with other small ones: merged with a
        # 16-image slice, one image's pass cost the slice's (16 x 6 test-time views of the CNN, ~0.2 s on a
        # 2-core CPU without bf16, several times that under load).
        self.small_images = max(1, slice_images // 2)
        self.max_overtaken_seconds = max_overtaken_seconds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-forward")
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._busy = False
        self._last_pass_large = False
        self._arrivals = 0
        self.passes = 0  # forward passes run (for tests and benchmarks)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return self._thread.submit(self._forward, batch).result()
        if len(batch) > self.slice_images:
            return np.concatenate([self.run(batch[i : i + self.slice_images])
                                   for i in range(0, len(batch), self.slice_images)])
        with self._cond:
            self._arrivals += 1
            job = _Job(batch, order=self._arrivals, arrived=time.monotonic())
            self._pending.append(job)
            while self._busy and not job.done:
                self._cond.wait()
            if job.done:
                return self._outcome(job)
            self._busy = True  # this caller leads until its own job is done
        try:
            while not job.done:
                self._run_one_pass()
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return self._outcome(job)

    def _take(self) -> list[_Job]:
        """Smallest jobs first (a one-image request is not stuck behind a 32-image one), then arrival order,
        except that a job waiting longer than `max_overtaken_seconds` goes first (no starvation), but never in two
        passes running while a small job waits: under a flood of large jobs every one of them was overdue, and a
        person's photo waited behind all of them (3 s for the Custom CNN alone, bench_soak.py --only mixed-flood).
        Always at least one job, so an oversized batch still runs (in one pass); a pass led by a small job takes
        only small ones, and one led by a large job at most `slice_images` images: merged, four requests' slices made
        a 64-image pass that a person's photo then waited 2-3 s for under that flood."""
        overdue_before = time.monotonic() - self.max_overtaken_seconds
        if self._last_pass_large and any(len(j.batch) <= self.small_images for j in self._pending):
            overdue_before = float("-inf")  # the small jobs' turn: a large job has just had its pass
        self._pending.sort(key=lambda j: (0, 0, j.order) if j.arrived <= overdue_before else (1, len(j.batch), j.order))
        taken, images = [], 0
        while self._pending and (not taken or images + len(self._pending[0].batch) <= self.max_images):
            if taken and len(taken[0].batch) <= self.small_images < len(self._pending[0].batch):
                break  # a small job's pass carries no slice of a large one: the person waits for their own images
            if taken and len(taken[0].batch) > self.small_images and images + len(self._pending[0].batch) > max(
                    self.slice_images, len(taken[0].batch)):
                break  # a large job's pass stays one slice long: what a person's photo may have to wait for
            job = self._pending.pop(0)
            taken.append(job)
            images += len(job.batch)
        self._last_pass_large = len(taken[0].batch) > self.small_images
        return taken

    def _run_one_pass(self) -> None:
        with self._cond:
            jobs = self._take()
        try:
            merged = np.concatenate([j.batch for j in jobs]) if len(jobs) > 1 else jobs[0].batch
            rows = self._thread.submit(self._forward, merged).result()
            self.passes += 1
        except BaseException as exc:  # every job in the pass gets the error, not only the leader
            with self._cond:
                for j in jobs:
                    j.error, j.done = exc, True
                self._cond.notify_all()
            return
        with self._cond:
            start = 0
            for j in jobs:
                j.result, j.done = rows[start : start + len(j.batch)], True
                start += len(j.batch)
            self._cond.notify_all()

    @staticmethod
    def _outcome(job: _Job) -> np.ndarray:
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result
