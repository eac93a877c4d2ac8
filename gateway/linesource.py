"""Serial-style line sources: follow a growing file, a named pipe, a tty or stdin, line by line.

For a regular file the byte offset reached is stored in the queue database in
the same transaction as the readings it yielded, so a restart resumes exactly
where the last commit ended (no loss, no repeat). A file that is truncated or
replaced (new inode, as after log rotation) is read again from its start.
Pipes and ttys have no offset: what was read is committed before more is read.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import threading

from .config import LineSourceConfig
from .intake import Admission, Checked, check_lines
from .queue import DiskQueue

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_MAX_PENDING = 1024 * 1024  # a "line" longer than this is cut and rejected


class LineSource:
    """Reads one path in its own thread and appends what it validates to the queue."""

    def __init__(
        self,
        config: LineSourceConfig,
        queue: DiskQueue,
        admission: Admission,
        stop: threading.Event,
        on_rows=None,
    ):
        self.config = config
        self.queue = queue
        self.admission = admission
        self.stop_event = stop
        self.on_rows = on_rows or (lambda n, dropped: None)
        self.label = config.label
        self.source = f"line:{self.label}"
        self.thread = threading.Thread(target=self._run, name=f"lines-{self.label}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    # --- reading ------------------------------------------------------------------
    def _run(self) -> None:
        missing_logged = False
        while not self.stop_event.is_set():
            try:
                fd = self._open()
            except FileNotFoundError:
                if not missing_logged:
                    log.warning("line source missing path=%s; waiting for it", self.config.path)
                    missing_logged = True
                self.stop_event.wait(self.config.poll_s)
                continue
            except OSError as exc:
                log.error("line source cannot open path=%s error=%s", self.config.path, exc)
                self.stop_event.wait(max(self.config.poll_s, 5.0))
                continue
            missing_logged = False
            try:
                self._follow(fd)
            except Exception:
                log.exception("line source failed path=%s; reopening", self.config.path)
                self.stop_event.wait(self.config.poll_s)
            finally:
                if fd != 0:
                    os.close(fd)

    def _open(self) -> int:
        if str(self.config.path) == "-":
            return 0
        return os.open(self.config.path, os.O_RDONLY | os.O_NONBLOCK)

    def _follow(self, fd: int) -> None:
        st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)
        offset = 0
        if regular:
            os.set_blocking(fd, True)
            saved = self.queue.line_offset(self.source)
            if saved and saved[0] == st.st_ino and saved[1] <= st.st_size:
                offset = saved[1]
            os.lseek(fd, offset, os.SEEK_SET)
            log.info("line source open path=%s offset=%d", self.config.path, offset)
        else:
            log.info("line source open path=%s kind=stream", self.config.path)
        pending = b""
        while not self.stop_event.is_set():
            if not regular:
                ready, _, _ = select.select([fd], [], [], self.config.poll_s)
                if not ready:
                    continue
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                if not regular:
                    if fd == 0:
                        log.info("line source stdin closed")
                        self.stop_event.wait()
                        return
                    self.stop_event.wait(self.config.poll_s)  # FIFO without a writer
                    continue
                if self._replaced(st.st_ino, offset + len(pending)):
                    log.info("line source rotated or truncated path=%s", self.config.path)
                    return
                self.stop_event.wait(self.config.poll_s)
                continue
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                if len(pending) > _MAX_PENDING:
                    self._commit([pending], st.st_ino if regular else None, offset + len(pending))
                    offset += len(pending)
                    pending = b""
                continue
            complete, pending = pending[: cut + 1], pending[cut + 1 :]
            offset += len(complete)
            lines = [line.rstrip(b"\r") for line in complete.split(b"\n")[:-1]]
            self._commit(lines, st.st_ino if regular else None, offset)

    def _replaced(self, inode: int, position: int) -> bool:
        try:
            now = os.stat(self.config.path)
        except FileNotFoundError:
            return False  # keep reading the old file until a new one appears
        return now.st_ino != inode or now.st_size < position

    def _commit(self, lines: list[bytes], inode: int | None, offset: int) -> None:
        checked = Checked()
        check_lines(lines, self.source, self.admission, checked)
        dropped = self.queue.append(
            checked.rows,
            checked.rejects,
            messages=checked.messages,
            line_offset=(self.source, inode, offset) if inode is not None else None,
        )
        for r in checked.rejects[:3]:
            log.warning(
                "rejected source=%s code=%s reason=%s", self.source, r.code, r.message[:200]
            )
        if len(checked.rejects) > 3:
            log.warning(
                "rejected source=%s more=%d (see `swc gateway rejects`)",
                self.source,
                len(checked.rejects) - 3,
            )
        if checked.rows or dropped:
            self.on_rows(len(checked.rows), dropped)
