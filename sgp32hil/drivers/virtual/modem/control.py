"""Out-of-band control of the simulated modem: JSON lines over a Unix socket.

Request ``{"id": 1, "method": "set_coverage", "params": {"network": "operational", "on": false}}``, answer
``{"id": 1, "result": ...}`` or ``{"id": 1, "error": "..."}``, one object per line.  Methods are those of
:data:`METHODS` on the :class:`~.service.SimulatedModem`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any

log = logging.getLogger(__name__)

METHODS = ("status", "euicc_info", "set_coverage", "set_reject", "move", "inject_urc", "fault", "refresh", "reenumerate",
           "shutdown", "urc_storm")
READ_DEADLINE_S = 30.0


class ControlError(Exception):
    """The control call failed (transport, or an ``error`` answer)."""


class ControlServer:
    """Serves :data:`METHODS` of ``target`` on ``path``; one thread per connection, every read with a deadline."""

    def __init__(self, path: str | os.PathLike, target: Any):
        self.path = os.fspath(path)
        self.target = target
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "ControlServer":
        if os.path.exists(self.path):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="modem-control", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="modem-control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(READ_DEADLINE_S)
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        conn.sendall((json.dumps(self.dispatch(line)) + "\n").encode())
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def dispatch(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
        except ValueError as exc:
            return {"id": None, "error": f"invalid JSON: {exc}"}
        rid = request.get("id") if isinstance(request, dict) else None
        if not isinstance(request, dict) or request.get("method") not in METHODS:
            return {"id": rid, "error": f"unknown method; methods: {', '.join(METHODS)}"}
        params = request.get("params") or {}
        if not isinstance(params, dict):
            return {"id": rid, "error": "params must be an object"}
        try:
            result = getattr(self.target, request["method"])(**params)
        except (TypeError, ValueError, KeyError) as exc:
            return {"id": rid, "error": f"{type(exc).__name__}: {exc}"}
        return {"id": rid, "result": result}

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        try:
            os.unlink(self.path)
        except OSError:
            pass


class ControlClient:
    """``ControlClient(path).call("move", network="operational")``."""

    def __init__(self, path: str | os.PathLike, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(os.fspath(path))
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot connect to {path}: {exc}") from exc
        self._id = 0
        self._buf = b""

    def call(self, method: str, **params: Any) -> Any:
        self._id += 1
        try:
            self.sock.sendall((json.dumps({"id": self._id, "method": method, "params": params}) + "\n").encode())
            while b"\n" not in self._buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ControlError("control socket closed")
                self._buf += chunk
        except OSError as exc:
            raise ControlError(f"{method}: {exc}") from exc
        line, self._buf = self._buf.split(b"\n", 1)
        answer = json.loads(line)
        if "error" in answer:
            raise ControlError(f"{method}: {answer['error']}")
        return answer.get("result")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
