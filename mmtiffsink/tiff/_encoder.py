"""A file's frames on their way through the shared pool: encoded in batches, a few tasks at once.

A pool task per frame costs a submit, a future and a wake-up (25-80 µs here): as much as
encoding a 64x64 frame. So the file's writer thread puts frames in the file's queue and starts
a task only when fewer than ``workers`` tasks of this file run; a task takes its share of what
is queued (the queue split over ``workers`` tasks, up to :data:`BATCH_FRAMES` frames or
:data:`BATCH_BYTES` bytes), encodes it, delivers it back to
the writer thread and, if more is queued, submits itself again, behind other files' tasks (so
many open files share the pool fairly). An idle stream gets a task per frame; a stream faster
than the pool gets batches, and the per-task cost is shared by its frames.

Only the writer thread puts frames and pool workers take them: neither is the main thread, so
no KeyboardInterrupt strikes here. ``_queue`` and ``_tasks`` are guarded by ``_lock``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from . import _pool
from ._appender import data_key
from ._codecs import Codec
from ._writer import Job

__all__ = ["BATCH_BYTES", "BATCH_FRAMES", "EncodeQueue"]

BATCH_FRAMES = 32
"""Frames one task takes from the queue at most."""
BATCH_BYTES = 4 << 20
"""Raw bytes one task takes at most (a larger frame is a batch of its own)."""


class EncodeQueue:
    """The frames of one file waiting for the pool.

    Parameters
    ----------
    pool
        The shared pool.
    workers
        Tasks of this file that may run at once.
    codec
        The file's codec.
    deliver
        Hands encoded (or failed) jobs back to the file's writer thread.

    """

    def __init__(
        self,
        pool: Executor,
        workers: int,
        codec: Codec,
        deliver: Callable[[list[Job]], None],
    ) -> None:
        self._pool = pool
        self._workers = max(1, workers)
        self.codec = codec
        self._deliver = deliver
        self._spares = _pool.spares()
        self._budget = _pool.budget()
        self._lock = threading.Lock()
        self._queue: deque[Job] = deque()
        self._tasks = 0

    def put(self, jobs: list[Job]) -> None:
        """Queue frames and start tasks for them (the writer thread).

        If the pool refuses (the interpreter is shutting down) they are encoded here.
        """
        with self._lock:
            self._queue.extend(jobs)
            start = min(self._workers - self._tasks, len(self._queue))
            self._tasks += start
        for _ in range(start):
            try:
                self._pool.submit(self._run)
            except RuntimeError:  # no pool any more (interpreter shutdown): work here
                with self._lock:
                    self._tasks -= 1
                self._drain_here()

    def backlog(self) -> bool:
        """Whether a full batch per task is queued (read without the lock: a hint)."""
        return len(self._queue) >= self._workers * BATCH_FRAMES

    def _take(self) -> list[Job]:
        batch: list[Job] = []
        nbytes = 0
        queue = self._queue
        # a task's share: the queue split over the file's tasks, so that a short queue still
        # keeps every worker busy, up to a batch's worth
        most = min(BATCH_FRAMES, -(-len(queue) // self._workers))
        while queue and len(batch) < most:
            arr = queue[0].arr
            size = 0 if arr is None else arr.nbytes
            if batch and nbytes + size > BATCH_BYTES:
                break
            batch.append(queue.popleft())
            nbytes += size
        return batch

    def _encode(self, job: Job) -> int:
        """Compress one frame into its job; failures go in the job (reported on save/close).

        Returns the bytes the job still holds (its encoded frame and tags), or -1 when its
        charge stays as it is.
        """
        arr, job.arr = job.arr, None
        try:
            assert arr is not None
            job.data = self.codec.encode(arr)
            job.digest = data_key(job.data)
        except Exception as exc:
            job.error = exc
            return -1
        if not isinstance(job.data, bytes):  # a view of arr ("none"): arr is still needed
            return -1
        self._spares.give_back(arr)  # new bytes: the copy is free (kept if large enough)
        return len(job.data) + sum(len(tag.value) for tag in job.extra) + 1024

    def _one_batch(self, counted: bool) -> bool:
        """Encode and deliver one batch; False (and the task uncounted) when none was queued."""
        with self._lock:
            batch = self._take()
            if not batch:
                if counted:
                    self._tasks -= 1
                return False
        held = [(job, self._encode(job)) for job in batch]
        self._budget.reduce_many([(job, n) for job, n in held if n >= 0])  # raw bytes freed
        self._deliver(batch)
        return True

    def _run(self) -> None:
        """A pool task: one batch, then again behind the other files' tasks if more waits."""
        if not self._one_batch(counted=True):
            return
        with self._lock:
            more = bool(self._queue)
            if not more:
                self._tasks -= 1
        if more:
            try:
                self._pool.submit(self._run)
            except RuntimeError:  # the pool is shutting down: finish the queue here
                with self._lock:
                    self._tasks -= 1
                self._drain_here()

    def _drain_here(self) -> None:
        while self._one_batch(counted=False):
            pass
