"""Ordering, the appender role and the error latch of one file.

Frames reach the file in the order they were saved (so a file saved in plane order needs no
chain rewrite at close), yet workers never wait for each other: a finished frame is parked,
and whichever thread finds the next frame in line ready takes the *appender role* and appends
it and every parked successor. The role is held outside the file's lock, so a ``save`` never
waits for a disk write of another frame; only one thread appends at a time.

The first failure is latched: later frames are dropped, and ``save``/``flush``/``close`` raise
it as :class:`~mmtiffsink.errors.WriterError`. A ``BaseException`` (KeyboardInterrupt,
SystemExit) raised in the saving thread is never latched: it reaches the caller as itself,
and the file stays valid.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import WriterError
from ._frames import Key
from ._tags import Tag

__all__ = ["Job", "Sequencer"]


@dataclass(slots=True, eq=False)
class Job:
    """One saved frame on its way to the file."""

    seq: int
    coord: Key
    charge: int
    """Bytes of the in-flight budget it holds."""
    bound: int
    """Upper bound of the bytes it adds to the file."""
    data: bytes | memoryview = b""
    digest: int = 0
    extra: tuple[Tag, ...] = field(default=())
    error: BaseException | None = None
    """It failed before reaching the appender (latched when its turn comes)."""
    skip: bool = False
    """It was interrupted in the saving thread: its turn passes, its plane stays free."""
    owner: int = 0
    """The thread that will deposit it (0: a pool worker)."""
    passed: bool = False
    """Its turn has passed (appended, dropped or skipped)."""
    unordered: bool = False
    """Appended by its saving thread at once, outside the save order (``keep_up``)."""


class Sequencer:
    """Puts one file's jobs in save order and gives the appender role to one thread at a time.

    Parameters
    ----------
    lock, cond
        The file's lock (every field here is guarded by it) and a condition on it. Blocks
        hold the plain lock (``with lock``), whose C-level ``__enter__`` a KeyboardInterrupt
        cannot split from the block; ``Condition.__enter__`` is Python code, and a signal
        landing in it would leave the lock held.
    append
        Appends a job's frame (called with the role held, the lock released).
    landed
        Whether a job's plane is in the file (asked after an interruption).
    finished
        Called under the lock for every job whose turn has passed, with whether it landed.
    handoff
        Asks a pool worker to append the parked jobs (called without the lock) when a thread
        gives up the role while jobs are next in line: it was interrupted, or it appended a
        frame of its own out of order.

    """

    def __init__(
        self,
        lock: threading.Lock,
        cond: threading.Condition,
        append: Callable[[Job], None],
        landed: Callable[[Job], bool],
        finished: Callable[[Job, bool], None],
        handoff: Callable[[], None],
    ) -> None:
        self.lock = lock
        self.cond = cond
        self._append = append
        self._landed = landed
        self._finished = finished
        self._handoff = handoff
        # jobs in line, by number, until their turn has passed (the appender takes them in
        # order but removes them only then: an interrupt anywhere leaves every job findable)
        self._ready: dict[int, Job] = {}
        # jobs a saving thread reserved and still owns (not deposited, not handed to the pool):
        # at most one or two per saving thread, so looking through them costs nothing
        self._reserved: dict[int, Job] = {}
        # jobs a saving thread appends itself, out of order (keep_up), until they pass
        self._unordered: dict[int, Job] = {}
        self._wanted = 0  # saving threads waiting for the appender role (they go first)
        self._role = 0  # the thread holding the appender role
        self._current: Job | None = None  # the job whose bytes the appender is writing
        self._next_seq = 0
        self._write_seq = 0
        self._appending = False
        self.pending = 0
        self.error: BaseException | None = None

    def reserve(self, coord: Key, held: list[int], bound: int, extra: tuple[Tag, ...]) -> Job:
        """A new job, next in save order (lock held); pending until its turn has passed.

        The job takes over the budget bytes in ``held[0]`` (given back when its turn passes).
        The saving thread owns it until it deposits it or hands it to the pool (then
        :meth:`handed` clears the owner). Should an interrupt stop that thread in between,
        :meth:`abandon` (or, at its next call, :meth:`free_orphans`) lets the job's turn pass
        (its plane stays free) instead of waiting forever.
        """
        job = Job(self._next_seq, coord, held[0], bound, extra=extra)
        job.owner = threading.get_ident()
        # no call between these stores, so no interrupt can separate them
        self._reserved[job.seq] = job
        held[0] = 0
        self._next_seq += 1
        self.pending += 1
        return job

    def reserve_unordered(self, coord: Key, bound: int, extra: tuple[Tag, ...]) -> Job:
        """A job its saving thread appends at once with :meth:`append_unordered` (lock held).

        Pending like any job (so ``close`` waits for it); an interrupt between the two
        leaves it to :meth:`free_orphans`, as for :meth:`reserve`.
        """
        job = Job(-1, coord, 0, bound, extra=extra, unordered=True)
        job.owner = threading.get_ident()
        self._unordered[id(job)] = job
        self.pending += 1
        return job

    def append_unordered(self, job: Job) -> None:
        """Append a job of :meth:`reserve_unordered` in this thread, now.

        Waits only for the job being appended by another thread (a waiting saving thread
        goes before the parked jobs); parked jobs are then handed to a worker.
        """
        landed = False
        with self.lock:
            if self._unordered.pop(id(job), None) is None:
                return  # its turn already passed (see free_orphans)
            if self._appending and self._role == threading.get_ident():
                self._appending = False  # left held by an interrupt in this thread
            self._wanted += 1
            try:
                while self._appending:
                    self.cond.wait()
            except BaseException:
                self._unordered[id(job)] = job  # still this thread's: abandon takes it
                raise
            finally:
                self._wanted -= 1
            self._appending = True
            self._role = threading.get_ident()
        try:
            landed = self._run(job)
        except BaseException:
            landed = self._landed(job)
            raise
        finally:
            with self.lock:
                self._appending = False
                self.pending -= 1
                job.passed = True
                self._finished(job, landed)
                self.cond.notify_all()
                parked = self.can_pump()
            if parked:  # jobs a worker left while this thread appended: a worker appends them
                self._handoff()

    def handed(self, job: Job) -> None:
        """The pool has the job: a worker will deposit it (lock held)."""
        self._reserved.pop(job.seq, None)
        job.owner = 0

    def free_orphans(self) -> None:
        """Let the turn pass of every job this thread reserved and never deposited (lock held).

        Called from ``save``, ``flush`` and ``close``: a thread there is not in the middle of
        depositing a job of its own, so such a job was orphaned by an interrupt.
        """
        me = threading.get_ident()
        for job in [j for j in self._reserved.values() if j.owner == me]:
            del self._reserved[job.seq]
            job.skip = True
            self._ready[job.seq] = job
        for job in [j for j in self._unordered.values() if j.owner == me]:
            del self._unordered[id(job)]
            self.pending -= 1
            job.passed = True
            self._finished(job, False)

    def owned(self, coord: Key) -> Job | None:
        """The job for ``coord`` this thread reserved and still owns, if any (lock held)."""
        me = threading.get_ident()
        for job in (*self._reserved.values(), *self._unordered.values()):
            if job.coord == coord and job.owner == me:
                return job
        return None

    def abandon(self, job: Job) -> None:
        """An interrupt stopped this thread's save of ``job``: let its turn pass unless it landed.

        Called by the saving thread on its way out (lock not held). A job handed to the pool
        is left alone (it holds a copy: it still lands); a job of this thread not yet
        appended is skipped, its plane stays free. If another thread is writing its bytes
        now, this waits until that append is over: after this returns the file never reads
        the caller's buffer again.
        """
        me = threading.get_ident()
        with self.lock:
            if self._appending and self._role == me:
                # this thread is on its way out of save, not appending: a role it still holds
                # was left by the interrupt (e.g. between taking it and the append's try)
                self._appending = False
                self.cond.notify_all()
            if job.passed or job.owner != me:
                return
            # from the job's own state, wherever the interrupt left it (reserved, parked,
            # or taken out of one container and not yet put in the next)
            if job.unordered:  # only its own thread appends it: not being appended now
                self._unordered.pop(id(job), None)
                self.pending -= 1
                job.passed = True
                self._finished(job, self._landed(job))
            else:
                while self._current is job and not job.passed:
                    self.cond.wait()  # another thread is writing its bytes: a moment
                if not job.passed and job.seq >= self._write_seq:
                    job.skip = True
                    self._ready[job.seq] = job
                    self._reserved.pop(job.seq, None)
            self.cond.notify_all()
            parked = self.can_pump()
        if parked:
            self._handoff()

    def latch(self, exc: BaseException) -> None:
        """Keep the first failure (lock held)."""
        if self.error is None:
            self.error = exc

    def raise_error(self, path: object, frames: int) -> None:
        """Raise the latched failure, if any, as a :class:`WriterError` (lock held)."""
        err = self.error
        if err is None:
            return
        if isinstance(err, WriterError):
            raise err
        msg = (
            f"writing {path} failed: {err!r}. The file is a valid TIFF holding {frames} "
            "frames; mmtiffsink.repair() turns it into a hyperstack"
        )
        raise WriterError(msg) from err

    def deposit(self, job: Job) -> list[Job]:
        """Park a job and append whatever is next in line; return jobs whose turn passed.

        A job is taken once: a second deposit of its number (a job an interrupt orphaned,
        whose turn :meth:`free_orphans` already let pass) is ignored.
        """
        return self.deposit_many([job])

    def deposit_many(self, jobs: list[Job]) -> list[Job]:
        """:meth:`deposit` for several jobs at once (one lock, one pump)."""
        with self.lock:
            for job in jobs:
                if job.seq < self._write_seq or job.seq in self._ready:
                    continue
                self._ready[job.seq] = job  # first: an interrupt after it loses no job
                self._reserved.pop(job.seq, None)
        return self.pump()

    def can_pump(self) -> bool:
        """True when a job is next in line, no thread appends or waits to (lock held)."""
        return not self._appending and not self._wanted and self._write_seq in self._ready

    def pump(self) -> list[Job]:
        """Take the appender role if free and a job is next in line; return the jobs done.

        Runs until no job is ready, or a saving thread waits for the role. A job leaves
        ``_ready`` only once its turn has passed, so a BaseException (an interrupt in a
        saving thread) loses no job: the one it struck passes if it landed or is this
        thread's own (its save is the interrupted one); any other job stays in line, is
        handed to a worker, and the exception propagates.
        """
        passed: list[Job] = []
        me = threading.get_ident()
        while True:
            done: list[tuple[Job, bool]] = []
            held = interrupted = False
            try:
                with self.lock:
                    if not self.can_pump():
                        return passed
                    self._appending = True
                    held = True  # no call between these stores: no interrupt between them
                    self._role = me
                while True:
                    with self.lock:
                        job = self._ready.get(self._write_seq + len(done))
                        if job is None or self._wanted:  # a waiting saving thread goes first
                            break
                        if job.skip:  # decided under the lock (see abandon)
                            done.append((job, False))
                            continue
                        self._current = job
                    try:
                        landed = self._run(job)
                        done.append((job, landed))
                    except BaseException:
                        # the interrupt may strike just after the append above returned
                        recorded = bool(done) and done[-1][0] is job
                        if not recorded and (self._landed(job) or job.owner == me):
                            done.append((job, self._landed(job)))
                        raise
            except BaseException:
                interrupted = True
                raise
            finally:
                if held:
                    with self.lock:
                        self._appending = False  # first: an interrupt below cannot keep it
                        self._current = None
                        for job, landed in done:
                            # ``finished`` first (it may run twice, see _run); then the
                            # stores that pass the turn, with no call between them: an
                            # interrupt in this loop leaves the rest in line, and the next
                            # appender passes them again without appending twice
                            self._finished(job, landed)
                            del self._ready[job.seq]
                            self.pending -= 1
                            job.passed = True
                            self._write_seq += 1
                            passed.append(job)
                        self.cond.notify_all()
                        parked = interrupted and self.can_pump()
                    if parked:  # the interrupted thread leaves the rest to a worker
                        self._handoff()

    def _run(self, job: Job) -> bool:
        if job.skip:
            return False
        if self._landed(job):  # appended before an interrupt cut its turn short: done
            return True
        if job.error is not None:
            with self.lock:
                self.latch(job.error)
            return False
        if self.error is not None:
            return False
        try:
            self._append(job)
        except Exception as exc:
            with self.lock:
                self.latch(exc)
            return False
        return True

    def wait_passed(self, job: Job) -> None:
        """Wait until a deposited job's turn has passed, appending parked jobs if no thread does.

        For a job whose data is the caller's own buffer: once this returns, the file no
        longer needs it. An interrupted caller calls :meth:`abandon`, which makes sure the
        buffer is not read after the interrupt reached the caller.
        """
        while True:
            with self.lock:
                if job.passed:
                    return
                if not self.can_pump():
                    self.cond.wait()
                    continue
            self.pump()

    def wait_idle(self) -> None:
        """Wait until no job is pending, appending parked jobs if no thread does.

        A job this thread reserved but never deposited (an interrupt struck between the two),
        and an appender role this thread still holds (an interrupt struck while it gave the
        role back), cannot be waited for: the job's turn passes, the role is freed.
        """
        me = threading.get_ident()
        while True:
            with self.lock:
                if self.pending == 0:
                    return
                if self._appending and self._role == me:
                    self._appending = False
                self.free_orphans()
                if not self.can_pump():
                    self.cond.wait()
                    continue
            self.pump()
