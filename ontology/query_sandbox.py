"""Untrusted SPARQL runs where it can be stopped: a forked worker with a memory limit, killed at its deadline.

Why: pyoxigraph 0.5.13 cannot cancel a running query (a timed-out ``COUNT`` over a cross
product keeps a core busy, an ``ORDER BY`` over one grows to gigabytes) and segfaults on
queries nested about 3,000 deep, taking the whole service with it. So the service runs each
query it did not write in a child process:

* the child is ``os.fork()``-ed from the service, so it reads the very store the service has
  open (an in-memory store as a copy-on-write snapshot, an on-disk Oxigraph through the
  inherited RocksDB handle; a second ``Store.read_only`` opener while the service writes is
  undefined behaviour, per pyoxigraph's docs);
* it runs under ``RLIMIT_AS`` = its inherited address space + ``memory_bytes``, so one query
  takes at most that share of memory (the engine aborts on a failed allocation: SIGABRT);
* the parent waits for its answer until the deadline, then sends SIGKILL and reaps it, so a
  timed-out query stops using CPU at once (and ``PR_SET_PDEATHSIG`` kills it if the service dies);
* a child killed by a signal (segfault, abort, kill) is :class:`WorkerDied`: that request fails,
  the service goes on.

Before any of that, :func:`check_query_shape` refuses a query deeper, longer or with more
operators than :class:`QueryLimits` allow, without parsing it (:class:`QueryTooComplex`).

Fork safety: the child inherits only the forking thread. A store call on another thread that
holds an engine lock at the instant of the fork would leave that lock held in the child, so
the store's native calls take :data:`FORK_GUARD` shared and :func:`run_in_worker` takes it
exclusively for the instant of the fork (waiting at most :data:`FORK_WAIT_S`; a child that
still deadlocks is killed at its deadline like any slow query). The child does no I/O but
its pipe, never returns into the caller's code (``os._exit``), and runs with the collector off.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import os
import pickle
import resource
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ontology.store_terms import QueryTimeout, StoreError

T = TypeVar("T")

#: Longest a fork waits for other threads' store calls to leave the engine (then it forks anyway).
FORK_WAIT_S = 1.0
_PR_SET_PDEATHSIG = 1


def physical_memory_bytes() -> int:
    """This machine's RAM (bytes)."""
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class QueryLimits:
    """What one untrusted query may use: checked before parsing (shape) and while it runs (time, memory).

    ``max_depth`` counts nested ``{ ( [``; ``max_operators`` counts operator tokens and
    ``UNION``/``MINUS`` (a 10,000-term ``1+1+...`` or ``{} UNION {} ...`` crashes the engine as
    surely as deep nesting; a 400-step property path already takes it seconds to parse).
    ``memory_bytes`` is the address space a query's worker may add to what it inherits
    (None: a quarter of physical memory).
    """

    timeout_s: float | None = 10.0
    memory_bytes: int | None = None
    max_chars: int = 100_000
    max_depth: int = 64
    max_operators: int = 1_000

    def memory(self) -> int:
        return self.memory_bytes if self.memory_bytes is not None else physical_memory_bytes() // 4


class QueryTooComplex(ValueError):
    """The query is deeper, longer or has more operators than allowed; it was not parsed."""


class WorkerDied(StoreError):
    """The query's worker process died (a crash of the engine, or its memory limit); the message says how."""

    def __init__(self, message: str, signal_number: int | None = None) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class WorkerOutOfMemory(WorkerDied):
    """The query's worker ran out of its memory share."""


# -- the shape check -------------------------------------------------------------------------

_OPEN, _CLOSE = "{([", "})]"
_OPERATOR_CHARS = "+*/|^!&<>=-"
_WORD = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.-%\\?$@")
_IRI_FORBIDDEN = set(" \t\r\n<>\"{}|^`\\")


def check_query_shape(text: str, limits: QueryLimits = QueryLimits()) -> None:
    """Raise :class:`QueryTooComplex` if ``text`` is longer, deeper or has more operators than ``limits``.

    A linear scan that skips strings, IRIs and comments (so ``"{{{"`` or ``<urn:a(b>`` count
    nothing); it accepts every query the engine would, it only counts.

    >>> check_query_shape("ASK { ?s ?p ?o FILTER(?o > 1) }")
    >>> try:
    ...     check_query_shape("ASK " + "{" * 100 + "}" * 100)
    ... except QueryTooComplex as exc:
    ...     print(exc)
    query nested 65 deep; the limit is 64
    """
    if len(text) > limits.max_chars:
        raise QueryTooComplex(f"query is {len(text)} characters long; the limit is {limits.max_chars}")
    depth = operators = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _OPEN:
            depth += 1
            if depth > limits.max_depth:
                raise QueryTooComplex(f"query nested {depth} deep; the limit is {limits.max_depth}")
            i += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "\"'":
            i = _skip_string(text, i)
        elif c == "<" and (iri_end := _iri_end(text, i)) is not None:
            i = iri_end
        elif c in _WORD:
            start = i
            while i < n and text[i] in _WORD:
                i += 1
            if text[start:i].upper() in ("UNION", "MINUS"):
                operators += 1
        elif text.startswith("^^", i):  # a literal's datatype, not an operator
            i += 2
        elif c in _OPERATOR_CHARS:
            operators += 1
            i += 2 if text[i : i + 2] in ("&&", "||", "!=", "<=", ">=") else 1
        else:
            i += 1
        if operators > limits.max_operators:
            raise QueryTooComplex(f"query has more than {limits.max_operators} operators (+ - * / && || ! | ^ UNION MINUS ...)")


def _skip_string(text: str, i: int) -> int:
    quote = text[i]
    long = text[i : i + 3] == quote * 3
    i += 3 if long else 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif long and text[i : i + 3] == quote * 3:
            return i + 3
        elif not long and c == quote:
            return i + 1
        elif not long and c in "\r\n":
            return i  # an unterminated short string: the parser will say so
        else:
            i += 1
    return n


def _iri_end(text: str, i: int) -> int | None:
    """Index after the IRIREF starting at ``text[i] == '<'``, or None if it is the less-than operator."""
    j = i + 1
    n = len(text)
    while j < n and j - i < 4096:
        c = text[j]
        if c == ">":
            return j + 1
        if c in _IRI_FORBIDDEN:
            return None
        j += 1
    return None


# -- the worker ------------------------------------------------------------------------------


class _ForkGuard:
    """A readers-writer latch: store calls share it, a fork takes it alone for an instant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._forking = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self, wait_s: float) -> Iterator[None]:
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self._forking:  # one fork at a time
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    break
            self._forking = True
            while self._active and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
        try:
            yield
        finally:
            with self._cond:
                self._forking = False
                self._cond.notify_all()

    def reset_in_child(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._forking = False


#: Held shared by every native store call (see :mod:`ontology.store`), exclusively around a fork.
FORK_GUARD = _ForkGuard()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _address_space_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(fn: Callable[[], Any], write_fd: int, memory_bytes: int, cpu_s: int | None) -> None:
    """The worker's whole life: limits, run, one pickled answer down the pipe, exit. Never returns."""
    code = 70
    try:
        FORK_GUARD.reset_in_child()
        gc.disable()
        faulthandler.disable()  # a crash here is reported by the parent, not dumped as the parent's traceback
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        _die_with_parent()
        devnull = os.open(os.devnull, os.O_WRONLY)  # the engine's abort chatter ("memory allocation of N bytes failed")
        os.dup2(devnull, 2)  # stays out of the service's log: the parent reports how the worker ended
        limit = _address_space_bytes() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if cpu_s is not None:  # a backstop: the parent kills at the deadline anyway
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        try:
            payload = pickle.dumps(("ok", fn()), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            payload = pickle.dumps(("memory", f"the query needed more than its {memory_bytes >> 20} MB"))
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
            try:
                payload = pickle.dumps(("error", exc), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - an unpicklable exception: its text
                payload = pickle.dumps(("error", StoreError(f"{type(exc).__name__}: {exc}")))
        view = memoryview(payload)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
        code = 0
    finally:
        os._exit(code)


def run_in_worker(fn: Callable[[], T], *, timeout_s: float | None, memory_bytes: int) -> T:
    """``fn()`` in a forked child with ``memory_bytes`` more address space, SIGKILLed at ``timeout_s``.

    ``fn``'s result (or exception) must pickle. Raises :class:`QueryTimeout` at the deadline (the
    child is gone by the time this returns), :class:`WorkerOutOfMemory` or :class:`WorkerDied` if it
    ran out of memory or was killed by a signal, else whatever ``fn`` raised.
    """
    started = time.monotonic()
    deadline = None if timeout_s is None else started + timeout_s
    read_fd, write_fd = os.pipe()
    cpu_s = None if timeout_s is None else int(timeout_s) + 2
    with FORK_GUARD.exclusive(FORK_WAIT_S if timeout_s is None else min(FORK_WAIT_S, timeout_s / 2)):
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_fd)
            _child(fn, write_fd, memory_bytes, cpu_s)
    os.close(write_fd)
    chunks: list[bytes] = []
    timed_out = False
    try:
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], wait)
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise QueryTimeout(f"query exceeded its {timeout_s:g} s limit; its worker was killed and reaped "
                           f"{time.monotonic() - started:.2f} s after it started")
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        if signum == signal.SIGXCPU:
            raise QueryTimeout(f"query used its {cpu_s} s of CPU; its worker was stopped")
        raise WorkerDied(f"the query's worker process died with {name} (an engine crash, or more memory than the "
                         f"{memory_bytes >> 20} MB a query may use)", signum)
    data = b"".join(chunks)
    if os.WEXITSTATUS(status) != 0 or not data:
        raise WorkerDied(f"the query's worker process exited with status {os.WEXITSTATUS(status)} and no answer")
    tag, value = pickle.loads(data)
    if tag == "ok":
        return value  # type: ignore[no-any-return]
    if tag == "memory":
        raise WorkerOutOfMemory(value)
    raise value


__all__ = [
    "FORK_GUARD",
    "QueryLimits",
    "QueryTooComplex",
    "WorkerDied",
    "WorkerOutOfMemory",
    "check_query_shape",
    "physical_memory_bytes",
    "run_in_worker",
]
