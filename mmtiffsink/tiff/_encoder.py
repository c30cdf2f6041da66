"""A file's frames on their way through the shared pool: encoded in batches, a few tasks at once.

A pool task per frame costs a submit, a future and a wake-up (25-80 µs here): as much as
encoding a 64x64 frame. So ``save`` puts a frame in the file's queue and starts a task only
when fewer than ``workers`` tasks of this file run; a task takes what is queued (up to
:data:`BATCH_FRAMES` frames or :data:`BATCH_BYTES` bytes), encodes it, deposits it with the
file's sequencer and, if more is queued, submits itself again, behind other files' tasks (so
many open files share the pool fairly). An idle stream gets a task per frame, as before; a
stream faster than the pool gets batches, and the per-task cost is shared by its frames.

The queue's fields are guarded by the file's lock (the sequencer's). The count of tasks is
raised only by :meth:`EncodeQueue.start`, just before its ``submit``, and lowered if the submit
does not happen: an interrupt (KeyboardInterrupt) anywhere in a saving thread can at worst
leave a running task uncounted (one task more may run), never count a task that does not run,
which would leave frames queued with no task for them and ``close`` waiting forever. An
interrupt between queueing a frame and starting its task leaves the frame queued; the next
``save``, or :meth:`EncodeQueue.kick` before ``flush``/``close``/``read_frame`` wait, starts it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ._order import Job

__all__ = ["BATCH_BYTES", "BATCH_FRAMES", "EncodeQueue"]

BATCH_FRAMES = 32
"""Frames one task takes from the queue at most."""
BATCH_BYTES = 1 << 20
"""Raw bytes one task takes at most (a larger frame is a batch of its own)."""


class EncodeQueue:
    """The frames of one file waiting for the pool.

    Parameters
    ----------
    lock
        The file's lock (guards the queue and the task count).
    pool
        The shared pool.
    workers
        Tasks of this file that may run at once.
    encode
        Encodes one job's frame into the job (never raises: failures go into the job).
    deposit
        Hands encoded jobs to the sequencer (called without the lock).

    """

    def __init__(
        self,
        lock: threading.Lock,
        pool: Executor,
        workers: int,
        encode: Callable[[Job, np.ndarray], None],
        deposit: Callable[[list[Job]], Any],
    ) -> None:
        self.lock = lock
        self._pool = pool
        self._workers = max(1, workers)
        self._encode = encode
        self._deposit = deposit
        self._queue: deque[tuple[Job, np.ndarray]] = deque()
        self._tasks = 0

    def put(self, job: Job, arr: np.ndarray) -> None:
        """Queue a frame (lock held); then call :meth:`start`."""
        self._queue.append((job, arr))

    def start(self) -> None:
        """Start a pool task for what is queued if fewer than ``workers`` run (lock not held).

        If the pool refuses (it is shutting down) the queue is encoded in this thread.
        """
        counted = False
        try:
            with self.lock:
                if not self._queue or self._tasks >= self._workers:
                    return
                counted = True  # before the count: an interrupt between leaves it lower
                self._tasks += 1
            self._pool.submit(self._run)
            counted = False
        except Exception:
            if not counted:
                raise
            counted = False  # no pool any more (interpreter shutdown): do the work here
            self._drain_here()
        except BaseException:
            if counted:  # the task never started: uncount it
                with self.lock:
                    self._tasks -= 1
            raise

    def kick(self) -> None:
        """Start a task for frames an interrupted ``save`` left queued (before waiting)."""
        self.start()

    def detach(self, lock: threading.Lock) -> None:
        """In a fork child: the queued frames are the parent's; this copy starts no task."""
        self.lock = lock
        self._queue.clear()
        self._workers = 0

    def _take(self) -> list[tuple[Job, np.ndarray]]:
        batch: list[tuple[Job, np.ndarray]] = []
        nbytes = 0
        queue = self._queue
        while queue and len(batch) < BATCH_FRAMES:
            size = queue[0][1].nbytes
            if batch and nbytes + size > BATCH_BYTES:
                break
            batch.append(queue.popleft())
            nbytes += size
        return batch

    def _one_batch(self) -> bool:
        """Encode and deposit one batch; False (and the task uncounted) when none was queued."""
        with self.lock:
            batch = self._take()
            if not batch:
                self._tasks -= 1
                return False
        jobs = []
        for job, arr in batch:
            self._encode(job, arr)
            jobs.append(job)
        del batch
        self._deposit(jobs)
        return True

    def _run(self) -> None:
        """A pool task: one batch, then again behind the other files' tasks if more waits."""
        if not self._one_batch():
            return
        with self.lock:
            more = bool(self._queue)
            if not more:
                self._tasks -= 1
        if more:
            try:
                self._pool.submit(self._run)
            except BaseException:  # the pool is shutting down: finish the queue here
                self._drain_here()

    def _drain_here(self) -> None:
        while self._one_batch():
            pass
