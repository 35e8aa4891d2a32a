"""Parse a file in a child process under a time and a memory budget (``[ingest] parse_timeout_s`` and
``parse_memory_mb``).

Why a process and not checks inside the loaders: the expensive steps of a hostile file are single calls
into C (lxml building a 95 MB XML tree, PDFium walking a page tree, BeautifulSoup's parser), which no
cooperative deadline can interrupt, and their memory is invisible to Python's allocator. A child process
can be killed at the deadline or when its resident memory passes the budget (polled every 50 ms), runs
under ``RLIMIT_DATA`` at twice the budget against a faster burst, and a parser crash (a segfault in a C
library) costs one file, not the ingest. ``docs/reliability.md`` has the measurements behind the choice.

The worker is a plain ``python -c`` child (no ``multiprocessing``: a user script without a
``__main__`` guard must not be re-imported), kept between files and replaced after a timeout, a crash
or a memory error. Requests and results cross the pipe as length-prefixed JSON of plain data: texts,
metadata, log records; nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kb_assistant.errors import (
    ConfigError,
    CorruptFile,
    EmptyFile,
    EncryptedFile,
    FileTooLarge,
    LoaderError,
    UnsupportedFormat,
)
from kb_assistant.loaders.limits import ParseLimits, raise_hint
from kb_assistant.types import Document

logger = logging.getLogger(__name__)

_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    LoaderError, UnsupportedFormat, CorruptFile, EncryptedFile, EmptyFile, FileTooLarge, ConfigError)}
_HEADER = struct.Struct(">Q")
#: idle workers kept for the next file (per memory budget)
MAX_IDLE = 2
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from kb_assistant.loaders.sandbox import child_main; child_main()")


class _Gone(Exception):
    """The worker exited (or closed its pipe) before answering."""


class _Late(Exception):
    """The worker did not answer before the deadline."""


class _TooBig(Exception):
    """The worker's resident memory passed the budget."""

#: seconds between two looks at the worker's resident memory
POLL_S = 0.05


class Worker:
    """One parser process; :meth:`request` sends a file and waits for its result up to a deadline."""

    def __init__(self, memory_mb: float | None) -> None:
        self.memory_mb = memory_mb
        root = str(Path(__file__).resolve().parents[2])
        limit = str(int(2 * memory_mb * 2**20)) if memory_mb else "0"  # the backstop; RSS is polled
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        #: the largest resident memory seen during the current request, MB
        self.peak_seen = 0.0
        self.proc = subprocess.Popen([sys.executable, "-P", "-c", _BOOT.format(root=root), limit],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                     close_fds=True, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, payload: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        data = json.dumps(payload).encode("utf-8")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(_HEADER.pack(len(data)) + data)
        except (BrokenPipeError, OSError):
            raise _Gone() from None
        deadline = None if timeout is None else time.monotonic() + timeout
        self.peak_seen = 0.0
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline, self._watch))
        return json.loads(_read_exact(fd, size, deadline).decode("utf-8"))

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.proc.pid}/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return None

    def _watch(self) -> None:
        if self.memory_mb:
            rss = self.rss_mb() or 0.0
            self.peak_seen = max(self.peak_seen, rss)
            if rss > self.memory_mb:
                raise _TooBig()

    def kill(self) -> int | None:
        """Stop the process now; returns its exit status (negative: the signal that ended it)."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
            return None
        finally:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


def _read_exact(fd: int, n: int, deadline: float | None, watch: Any = None) -> bytes:
    """``n`` bytes from ``fd``; _Late past ``deadline``; ``watch()`` is called every :data:`POLL_S`."""
    parts: list[bytes] = []
    left = n
    while left:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if watch is not None:
            wait = POLL_S if wait is None else min(wait, POLL_S)
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            if watch is not None:
                watch()
            if deadline is not None and time.monotonic() >= deadline:
                raise _Late()
            continue
        block = os.read(fd, min(left, 1 << 20))
        if not block:
            raise _Gone()
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


class _Pool:
    """Idle workers by memory budget; a worker busy with a file belongs to its caller alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[Worker] = []

    def acquire(self, memory_mb: float | None) -> Worker:
        with self.lock:
            for worker in list(self.idle):
                self.idle.remove(worker)
                if worker.memory_mb == memory_mb and worker.alive():
                    return worker
                worker.kill()
        return Worker(memory_mb)

    def release(self, worker: Worker) -> None:
        with self.lock:
            if worker.alive() and len(self.idle) < MAX_IDLE:
                self.idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        with self.lock:
            workers, self.idle = self.idle, []
        for worker in workers:
            worker.kill()


POOL = _Pool()


def shutdown() -> None:
    """Stop the idle parser processes (they also exit by themselves when this process ends)."""
    POOL.close()


def parse_isolated(path: str | os.PathLike[str], *, max_bytes: int, pdf_engine: str,
                   limits: ParseLimits) -> list[Document]:
    """:func:`~kb_assistant.loaders.load.load_file` in a worker process (the same errors)."""
    return run(path, max_bytes=max_bytes, pdf_engine=pdf_engine, limits=limits)[0]


def run(path: str | os.PathLike[str], *, max_bytes: int, pdf_engine: str,
        limits: ParseLimits) -> tuple[list[Document], dict[str, Any]]:
    """Parse ``path`` in a worker; returns the documents and the worker's figures (``seconds``,
    ``peak_rss_mb`` of the parse)."""
    payload = {"path": os.fspath(Path(path).absolute()), "max_bytes": max_bytes, "pdf_engine": pdf_engine,
               "limits": limits.to_dict(),
               "log_level": logging.getLogger("kb_assistant").getEffectiveLevel()}
    worker = POOL.acquire(limits.memory_mb)
    t0 = time.perf_counter()
    try:
        reply = worker.request(payload, limits.timeout_s)
    except _Late:
        worker.kill()
        raise FileTooLarge(f"parsing took longer than {limits.timeout_s:g} s "
                           f"{raise_hint('parse_timeout_s')}") from None
    except _TooBig:
        worker.kill()
        raise _memory_error(limits) from None
    except _Gone:
        status = worker.kill()
        if limits.memory_mb and worker.peak_seen > 0.9 * limits.memory_mb:  # killed for its memory
            raise _memory_error(limits) from None
        raise _crash_error(status, limits) from None
    except BaseException:  # KeyboardInterrupt mid-parse: the worker's state is unknown
        worker.kill()
        raise
    if reply.get("restart"):
        worker.kill()
    else:
        POOL.release(worker)
    for name, level, message in reply.get("logs", ()):
        logging.getLogger(name).log(level, "%s", message)
    stats = {"seconds": time.perf_counter() - t0, "peak_rss_mb": reply.get("peak_rss_mb"),
             "worker_pid": worker.pid}
    if "error" in reply:
        peak = reply.get("peak_rss_mb") or 0
        if reply["error"] == "MemoryError" or (limits.memory_mb and peak > 0.9 * limits.memory_mb):
            raise _memory_error(limits)  # a C parser out of memory says "unknown error"
        raise _ERRORS.get(reply["error"], CorruptFile)(reply.get("message") or "the parser failed")
    return [Document(text=text, metadata=meta) for text, meta in reply["docs"]], stats


def _memory_error(limits: ParseLimits) -> LoaderError:
    return FileTooLarge(f"parsing needs more than the {limits.memory_mb:g} MB memory budget "
                        f"{raise_hint('parse_memory_mb')}")


def _crash_error(status: int | None, limits: ParseLimits) -> LoaderError:
    if status is not None and status < 0:
        try:
            how = signal.Signals(-status).name
        except ValueError:
            how = f"signal {-status}"
    else:
        how = f"exit status {status}"
    budget = f"{limits.memory_mb:g} MB memory budget" if limits.memory_mb else "memory"
    return CorruptFile(f"the parser crashed on this file ({how}): a damaged file, or more than the "
                       f"{budget} {raise_hint('parse_memory_mb')}")


# ---------------------------------------------------------------- the child process
class _Collect(logging.Handler):
    """Keeps the log records of one parse, sent back with its result."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append([record.name, record.levelno, record.getMessage()])
        except Exception:  # noqa: BLE001 - a bad log call must not lose the parse
            pass


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    try:  # Linux: "5" resets the peak RSS (VmHWM) of this process
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _read_request(fd: int) -> dict[str, Any] | None:
    try:
        (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, None))
        return json.loads(_read_exact(fd, size, None).decode("utf-8"))
    except _Gone:
        return None


def _answer(request: dict[str, Any], collect: _Collect) -> dict[str, Any]:
    from kb_assistant.loaders.registry import load_inline

    limits = ParseLimits.from_dict(request["limits"])
    try:
        docs = load_inline(request["path"], max_bytes=request["max_bytes"], pdf_engine=request["pdf_engine"],
                           limits=limits)
        reply: dict[str, Any] = {"docs": [[d.text, d.metadata] for d in docs]}
    except MemoryError:
        reply = {"error": "MemoryError", "restart": True}
    except (LoaderError, ConfigError) as exc:
        reply = {"error": type(exc).__name__ if type(exc).__name__ in _ERRORS else "LoaderError",
                 "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - load_inline maps parser errors; this is the last resort
        reply = {"error": "CorruptFile", "message": f"the parser failed ({type(exc).__name__})",
                 "restart": True}
    reply["logs"] = collect.records
    reply["peak_rss_mb"] = _peak_rss_mb()
    return reply


def child_main() -> None:
    """The worker's loop: read a request from stdin, parse, write the result; exit at end of input."""
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    out = os.dup(1)
    os.dup2(2, 1)  # a library printing to stdout must not corrupt the replies
    import kb_assistant.loaders.registry  # noqa: F401 - warm start

    root = logging.getLogger()
    while True:
        request = _read_request(0)
        if request is None:
            return
        timeout = request["limits"].get("timeout_s")
        signal.alarm(int(timeout) + 30 if timeout else 0)  # the parent died: do not parse forever
        _reset_peak()
        collect = _Collect()
        root.handlers[:] = [collect]
        root.setLevel(request.get("log_level", logging.WARNING))
        reply = _answer(request, collect)
        try:
            data = json.dumps(reply, ensure_ascii=False, default=str).encode("utf-8")
        except MemoryError:
            data = json.dumps({"error": "MemoryError", "restart": True}).encode("utf-8")
        os.write(out, _HEADER.pack(len(data)))
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
        signal.alarm(0)
        if reply.get("restart"):
            return
