"""The owner of a file's bytes: one writer thread per file, fed by the saving threads' hand-over.

Who does what
-------------
- **Saving threads** (``IJTiffFile.save``) check a frame, charge the process budget to its
  :class:`Job`, and hand the job over with :meth:`FileWriter.hand_over`: one dict store under
  the file's lock. That store is the only change a saving thread makes to the file's state.
  An interrupt (KeyboardInterrupt) or exception in a saving thread can therefore strike only
  before the store (the file never saw the job) or after it (the file has it whole); the
  saving thread's ``except`` calls :meth:`FileWriter.withdraw`, which reads from the job's own
  state what to undo. Every job holds its own memory (a copy, unless the frame was already
  the writer's), so a saving thread never waits for a write: only for room in the budget.
- **The writer thread** (at most one per file at a time, started on demand, ending when the
  file has been idle for :data:`LINGER` seconds or is closing) takes handed-over jobs from the
  inbox, numbers them in save order, sends frames to compress to the pool
  (:class:`~._encoder.EncodeQueue`), and appends ready frames in save order, in batches
  (:meth:`~._appender.Appender.append_many`: one write, one link). Uncompressed frames are
  ready at once, in save order (the saving thread computed their dedup key; the pool does it
  for the others); frames ``keep_up`` stored go at once, outside it. Only this thread calls
  the appender; it is never the main thread, so no KeyboardInterrupt reaches it.
- **Pool workers** encode batches and deliver them back with :meth:`FileWriter.deliver`.
- **The closing thread** waits until nothing is in flight, stops and joins the writer thread,
  and then owns the bytes for the final chain (:mod:`._finish`).

State and its lock
------------------
Every field of :class:`FileWriter` below "guarded by ``lock``" is read and written only with
``lock`` held; ``cond`` (on ``lock``) is notified whenever a job passes, the inbox changes
hands, or the writer thread starts or ends. The appender's bytes and its fields are the
writer thread's (the closing thread's after the join); ``app.planes`` is also read, under
``lock``, by ``read_frame`` and the attributes. The budget and the spare copies have their own
locks (see :class:`~._pool.Budget` and :class:`~._pool.Spares`), taken inside ``lock`` (to
release a job's bytes, to give back its copy), never the reverse.

A job's copy (``arr``) is given back to the spares by whoever is done with it last: the pool
worker once it is encoded (QUEUED), the writer thread once it is written (READY). After a fault
of the writer thread the jobs it drops give theirs back too; a frame a pool worker is still
encoding then may be overwritten, but it is one the file drops.

The first failure (an I/O error, a codec error) is latched: later frames are dropped, and
``save``/``flush``/``close`` raise it as :class:`~mmtiffsink.errors.WriterError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ..errors import WriterError
from . import _pool
from ._appender import Appender, Batch
from ._frames import NONE_SAVED, Coord, Key, widen
from ._pool import Budget
from ._series import SeriesTable
from ._tags import Tag

__all__ = ["LINGER", "FileWriter", "Job", "Kind", "State"]

LINGER = 0.5
"""Seconds an idle writer thread waits for more frames before it ends."""


def _no_backlog() -> bool:
    return False


class Kind(IntEnum):
    """How a job's frame reaches the file."""

    QUEUED = 0
    """Compressed on the pool (``arr`` is the writer's own copy); appended in save order."""
    STORED = 1
    """``keep_up``: stored uncompressed by the saving thread; appended at once."""
    READY = 2
    """Uncompressed: ``data`` is the bytes of the writer's own copy; appended in save order."""


class State(IntEnum):
    """Where a job is; written under the file's lock."""

    NEW = 0
    """Not handed over (or taken back by :meth:`FileWriter.withdraw`)."""
    INBOX = 1
    """Handed over; the writer thread has not taken it yet."""
    TAKEN = 2
    """Numbered by the writer thread; encoding or waiting for its turn."""
    WRITING = 3
    """Its bytes are being written."""
    PASSED = 4
    """Its turn has passed: appended (``landed``), or dropped after a failure."""


@dataclass(slots=True, eq=False)
class Job:
    """One saved frame on its way to the file (hashable by identity: a budget holder)."""

    key: Key
    kind: Kind
    bound: int
    """Upper bound of the bytes it adds to the file."""
    extra: tuple[Tag, ...]
    arr: np.ndarray | None = None
    """The writer's own copy of the frame (QUEUED: until encoded; READY: ``data`` views it)."""
    data: bytes | memoryview = b""
    digest: int = 0
    """The dedup key of ``data`` (:func:`~._appender.data_key`): by the saving thread (READY,
    STORED) or the pool worker (QUEUED); 0 until computed."""
    state: State = State.NEW
    seq: int = -1
    landed: bool = False
    error: BaseException | None = field(default=None, repr=False)
    """It failed before reaching the appender (latched when its turn comes)."""


class FileWriter:
    """The ordering, the writer thread and the error latch of one file.

    Parameters
    ----------
    app
        The file's appender (its bytes; see the module docstring for who may use it).
    budget
        The process's in-flight budget; a job's charge is released when its turn passes.
    encode
        Starts compressing QUEUED jobs on the pool (called by the writer thread).
    series
        The file's series table (spans of series > 0), extended as jobs are taken.

    """

    def __init__(
        self,
        app: Appender,
        budget: Budget,
        encode: Callable[[list[Job]], None],
        series: SeriesTable,
    ) -> None:
        self.app = app
        self.budget = budget
        self._spares = _pool.spares()
        self._encode = encode
        # whether the pool has work queued for longer than a wake-up of this thread takes
        # (set by the file to its encoder's): a QUEUED hand-over then leaves the job in the
        # inbox for the writer thread's next wake-up, a delivery, instead of waking it now
        self.backlog: Callable[[], bool] = _no_backlog
        self.series = series
        self.lock = threading.Lock()  # blocks hold the lock itself: its enter is one C call
        self.cond = threading.Condition(self.lock)  # saving threads, flush, close, read_frame
        self._work = threading.Condition(self.lock)  # the writer thread: work arrived
        # guarded by lock ---------------------------------------------------------------
        self.inbox: dict[Key, Job] = {}  # handed over, not taken (insertion = save order)
        self.claimed: dict[Key, Job] = {}  # taken, not passed
        self.plane_tags: dict[Key, list[Tag]] = {}  # append_extra_tag(czt=...), until saved
        self.low: Coord = (0, 0, 0)  # the span of the taken coordinates (see _frames.widen)
        self.high: Coord = NONE_SAVED
        self.inflight_bytes = 0  # sum of the bounds of taken jobs not passed
        self.pending = 0  # taken jobs not passed
        self.error: BaseException | None = None
        self.closing = False  # no more hand-overs
        self.frames_kept_up = 0
        self._ready: dict[int, Job] = {}  # ordered jobs ready to append, by number
        self._now: list[Job] = []  # STORED jobs: appended at once, outside the save order
        self._next_seq = 0
        self._write_seq = 0  # the number whose turn is next
        self._threads: list[threading.Thread] = []  # writer threads started, not joined
        self._writer: threading.Thread | None = None  # the one running the loop
        self._stop = False  # the writer thread ends as soon as nothing is in flight
        self._abandoned = False

    # ------------------------------------------------------------------ saving threads
    def hand_over(self, job: Job) -> bool:
        """Give ``job`` to the file (lock held by the caller, who checked the key is free).

        One store: before it the file has not seen the job, after it the job is the file's.
        Returns whether no writer thread runs: the caller then calls :meth:`kick` (after
        releasing the lock); a running one takes the job (it ends only with the inbox empty,
        and clears ``_writer`` under the lock as it decides to).
        """
        # the span grows with the save, not when the writer thread takes the job: ``shape``,
        # ``series_shapes`` and the next save's plane-count check see every save that
        # returned (a save withdrawn after this leaves its plane in the span: a blank plane
        # at close)
        self.extend(job.key)
        job.state = State.INBOX  # not yet visible: ``withdraw`` looks in the inbox first
        self.inbox[job.key] = job
        # a writer thread waiting with frames on the pool is woken by their delivery; with a
        # backlog there, routing this job sooner gains nothing (see ``backlog``)
        if job.kind is not Kind.QUEUED or not self.backlog():
            self._work.notify()
        return self._writer is None

    def kick(self) -> None:
        """Make sure a writer thread runs while jobs are in the inbox (lock not held).

        Called after every hand-over and before every wait; an interrupt before it leaves the
        job in the inbox until the file's next call, never lost.
        """
        with self.lock:
            if self._writer is not None or not (self.inbox or self.pending) or self._stop:
                return
            self._threads = [t for t in self._threads if t.is_alive()]  # ended: joined
            thread = threading.Thread(
                target=self._run, name=f"mmtiffsink-writer {self.app.io.path.name}"
            )
            self._writer = thread  # the loop checks that it is the one
            self._threads.append(thread)
        thread.start()

    def withdraw(self, job: Job) -> None:
        """A save of ``job`` failed or was interrupted: undo what the file holds of it.

        From the job's own state, wherever the exception struck: never handed over or still
        in the inbox, the job is taken back (its plane stays free) and its budget released; a
        job the writer thread has taken holds its own bytes and stays: it lands. The caller's
        buffer is never read after ``save`` returns or raises: every job holds a copy.
        """
        with self.lock:
            if job.state is State.INBOX:  # handed over (or about to be), not taken: take back
                if self.inbox.get(job.key) is job:
                    del self.inbox[job.key]
                job.state = State.NEW
            release = job.state is State.NEW
        if release:
            self.budget.release(job)

    def wait_idle(self) -> None:
        """Wait until no job is in the inbox or in flight (flush, close)."""
        while True:
            self.kick()
            with self.lock:
                while (self.inbox or self.pending) and self._writer is not None:
                    self.cond.wait()
                if not (self.inbox or self.pending) or self._stop:
                    return
            # a writer ended with work left (an interrupt before its kick): start another

    def stop(self) -> None:
        """End the writer thread once nothing is in flight, and join every writer thread.

        After this returns the calling thread owns the file's bytes (the closing thread).
        """
        with self.lock:
            self._stop = True
            self._work.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()]

    def abandon(self) -> bool:
        """The file was collected unclosed: end the writer; True if the descriptor was open."""
        with self.lock:
            self._abandoned = self._stop = True
            self._work.notify_all()
            running = self._writer is not None
        if running:
            return not self.app.io.closed  # the writer thread closes it as it ends
        return self._close_abandoned()

    def _close_abandoned(self) -> bool:
        from . import _pool

        was_open = not self.app.io.closed
        self.app.io.close()
        _pool.release_pool()
        return was_open

    def latch(self, exc: BaseException) -> None:
        """Keep the first failure (lock held)."""
        if self.error is None:
            self.error = exc

    def raise_error(self, path: object) -> None:
        """Raise the latched failure, if any, as a :class:`WriterError` (lock held)."""
        err = self.error
        if err is None:
            return
        if isinstance(err, WriterError):
            raise err
        msg = (
            f"writing {path} failed: {err!r}. The file is a valid TIFF holding "
            f"{len(self.app.planes)} frames; mmtiffsink.repair() turns it into a hyperstack"
        )
        raise WriterError(msg) from err

    def span(self, key: Key) -> tuple[Coord, Coord]:
        """The span with ``key`` (lock held)."""
        return widen(self.low, self.high, (key[0], key[1], key[2]))

    def extend(self, key: Key) -> None:
        """Grow the span (or the series table) to hold ``key`` (lock held)."""
        if len(key) == 3:
            self.low, self.high = widen(self.low, self.high, (key[0], key[1], key[2]))
        else:
            self.series.extend(key)

    def in_flight(self, key: Key) -> bool:
        """Saved and not yet passed (lock held)."""
        return key in self.inbox or key in self.claimed

    # ------------------------------------------------------------------ pool workers
    def deliver(self, jobs: list[Job]) -> None:
        """Encoded (or failed) QUEUED jobs back from the pool: ready for their turn."""
        with self.lock:
            for job in jobs:
                self._ready[job.seq] = job
            self._work.notify()

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        me = threading.current_thread()
        # whether this thread closes an abandoned file: decided with ``_writer`` cleared, under
        # the lock, so that exactly one of it and :meth:`abandon` closes the descriptor
        closes = False
        try:
            while True:
                with self.lock:
                    if self._writer is not me:
                        return
                    to_encode = self._take()
                    batch = self._batch() if not to_encode else []
                    if not batch and not to_encode:
                        if self._idle_end():
                            # decided under the lock: a hand-over after this sees no writer
                            # and starts one, never leaves its job in the inbox
                            self._writer = None
                            closes = self._abandoned
                            return
                        continue
                if to_encode:
                    self._encode(to_encode)
                if batch:
                    self._write(batch)
        except BaseException as exc:  # a fault in the writer itself: latch it, end
            with self.lock:
                self.latch(exc)
                self._drop_all()
            raise
        finally:
            with self.lock:
                if self._writer is me:
                    self._writer = None
                    closes = self._abandoned
                self.cond.notify_all()
                close_now = closes and not self.pending and not self.inbox
            if close_now and not self.app.io.closed:
                self._close_abandoned()

    def _idle_end(self) -> bool:
        """Nothing to do (lock held): wait; True when the thread is to end."""
        if not self.pending and not self.inbox:
            if self._stop:
                return True
            self.cond.notify_all()  # flush/close waiters: the file is idle
            woken = self._work.wait(LINGER)
            return not (woken or self.pending or self.inbox)  # idle for LINGER: end
        self._work.wait()  # frames are being encoded: deliver() notifies
        return False

    def _take(self) -> list[Job]:
        """Number the inbox's jobs in save order and route them (lock held)."""
        if not self.inbox:
            return []
        jobs = list(self.inbox.values())
        self.inbox.clear()
        to_encode: list[Job] = []
        for job in jobs:
            job.state = State.TAKEN
            if job.kind is not Kind.STORED:  # in save order (STORED ones go at once)
                job.seq = self._next_seq
                self._next_seq += 1
            key = job.key
            self.claimed[key] = job  # the span already holds it (hand_over extended it)
            self.inflight_bytes += job.bound
            self.pending += 1
            tags = self.plane_tags.pop(key, None)
            if tags:
                job.extra = (*job.extra, *tags)
            if job.kind is Kind.QUEUED:
                to_encode.append(job)
            elif job.kind is Kind.STORED:
                self._now.append(job)
            else:
                self._ready[job.seq] = job
        return to_encode

    def _batch(self) -> list[Job]:
        """The jobs to append now (lock held): STORED ones, then ordered ones in turn."""
        batch, self._now = self._now, []
        seq = self._write_seq
        while True:
            job = self._ready.pop(seq, None)
            if job is None:
                break
            batch.append(job)
            seq += 1
        self._write_seq = seq
        for job in batch:
            job.state = State.WRITING
        return batch

    def _write(self, jobs: list[Job]) -> None:
        """Append a batch (lock not held), then pass every job of it."""
        todo = Batch()
        failed = self.error is not None  # the latch is this thread's: read without the lock
        for job in jobs:
            if job.error is not None:
                failed = True  # frames after a failed one are dropped
            if not failed:
                todo.add(job.key, job.data, job.digest, job.extra)
        if todo.frames:
            error = self._append(todo)
            if error is not None:  # an I/O error, the 4 GiB of a classic file
                with self.lock:
                    self.latch(error)
        planes = self.app.planes
        with self.lock:
            for job in jobs:
                if job.error is not None:
                    self.latch(job.error)
                job.landed = landed = job.key in planes
                if landed and job.kind is Kind.STORED:
                    self.frames_kept_up += 1
                self._pass(job, release=False)
            self.budget.release_many(jobs)  # the budget's own lock
            self.cond.notify_all()

    def _append(self, batch: Batch) -> Exception | None:
        """Append a batch; the failure, if any (the file keeps every frame appended before).

        A batch that fails on an I/O error (a full disk) lands as none of its frames: its
        frames are then appended one by one, so the file keeps each frame that still fits.
        """
        try:
            self.app.append_many(batch)
        except OSError as exc:
            if len(batch.frames) == 1:
                return exc
        except Exception as exc:
            return exc
        else:
            return None
        for frame in batch.frames:
            one = Batch()
            one.add(*frame)
            try:
                self.app.append_many(one)
            except Exception as exc:
                return exc
        return None

    def _pass(self, job: Job, *, release: bool = True) -> None:
        """A job's turn has passed (lock held): free its plane (unless landed) and bytes."""
        job.state = State.PASSED
        job.data = b""
        arr, job.arr = job.arr, None
        self._spares.give_back(arr)  # READY: written, its copy free again
        self.claimed.pop(job.key, None)
        self.inflight_bytes -= job.bound
        self.pending -= 1
        if release:
            self.budget.release(job)  # the budget's own lock: never waits

    def _drop_all(self) -> None:
        """After a fault of the writer itself: pass every job so that no one waits (lock held)."""
        for job in [*self._now, *self._ready.values(), *self.claimed.values()]:
            if job.state is not State.PASSED:
                self._pass(job)
        self._now, self._ready = [], {}
        for job in self.inbox.values():
            job.state = State.NEW
            self.budget.release(job)
        self.inbox.clear()

    # ------------------------------------------------------------------ fork
    def detach_after_fork(self) -> None:
        """In a fork child: the parent's writer thread does not exist here; nothing is written."""
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._work = threading.Condition(self.lock)
        self._threads, self._writer = [], None
        self.inbox.clear()
        self.closing = self._stop = True
