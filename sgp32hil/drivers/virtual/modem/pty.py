"""A pseudo-terminal with a stable symlink, opened by pyserial like a USB modem's tty.

The slave is set raw (no line discipline echo or CR/LF mapping); the simulator keeps its own slave fd
open so a client closing the port never hangs up the master.  :meth:`PtyPort.drop` closes both ends
(the client's next read fails with EIO, as on USB re-enumeration) and removes the link;
:meth:`PtyPort.create` makes a new pty and moves the link atomically.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable

log = logging.getLogger(__name__)

WRITE_DEADLINE_S = 1.0


class PtyPort:
    """The master side: a reader thread hands received bytes to ``on_data``; :meth:`write` has a deadline."""

    def __init__(self, link: str | os.PathLike, on_data: Callable[[bytes], None]):
        self.link = os.fspath(link)
        self.on_data = on_data
        self.master = -1
        self.slave = -1
        self.slave_name = ""
        self.generation = 0
        self._wlock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped_bytes = 0

    @property
    def up(self) -> bool:
        return self.master >= 0

    def create(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        name = os.ttyname(slave)
        tmp = f"{self.link}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        with self._wlock:
            self.master, self.slave, self.slave_name = master, slave, name
            self.generation += 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, args=(master, self._stop), name=f"pty[{name}]",
                                        daemon=True)
        self._thread.start()
        log.info("modem port %s -> %s", self.link, name)
        return name

    def _read_loop(self, master: int, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # no client has the slave open: poll again
                    stop.wait(0.05)
                    continue
                return
            if data:
                try:
                    self.on_data(data)
                except Exception:
                    log.exception("modem input handler failed")

    def write(self, data: bytes) -> bool:
        """Write all of ``data`` within WRITE_DEADLINE_S; False (and counted as dropped) when it cannot."""
        with self._wlock:
            fd = self.master
            if fd < 0:
                self.dropped_bytes += len(data)
                return False
            view = memoryview(data)
            deadline = time.monotonic() + WRITE_DEADLINE_S
            while view:
                try:
                    n = os.write(fd, view)
                    view = view[n:]
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.dropped_bytes += len(view)
                        log.warning("modem port %s: host not reading, %d bytes dropped", self.link, len(view))
                        return False
                    select.select([], [fd], [], min(remaining, 0.1))
                except OSError as exc:
                    self.dropped_bytes += len(view)
                    log.warning("modem port %s: write failed: %s", self.link, exc)
                    return False
            return True

    def drop(self) -> None:
        """Close both ends and remove the link: the client sees EIO, as when a USB device disappears."""
        self._stop.set()
        with self._wlock:
            fds, self.master, self.slave = (self.master, self.slave), -1, -1
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        try:
            if os.path.islink(self.link) and os.readlink(self.link) == self.slave_name:
                os.unlink(self.link)
        except OSError:
            pass

    def close(self) -> None:
        self.drop()
