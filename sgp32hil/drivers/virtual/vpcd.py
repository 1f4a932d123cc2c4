"""Card side of vsmartcard's vpcd: puts a software :class:`~.card.Card` into a virtual PC/SC reader.

vpcd (the pcscd IFD handler) listens on TCP; the card connects as a client.  Every message in both
directions is a 2-byte big-endian length followed by the payload.  A 1-byte payload from vpcd is a
control message (0 power off, 1 power on, 2 reset, 4 send ATR; only 4 is answered, with the ATR); any
other payload is a C-APDU, answered with the R-APDU.  Connecting is card insertion, disconnecting is
removal.  See the shared reference PCSC-VIRTUAL.md (vpcd latency) for the notes behind TCP_NODELAY and
TCP_QUICKACK.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading

from .card import Card

log = logging.getLogger(__name__)

VPCD_POWER_OFF = 0
VPCD_POWER_ON = 1
VPCD_RESET = 2
VPCD_GET_ATR = 4

_SW_UNKNOWN = b"\x6f\x00"
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class _Disconnected(Exception):
    pass


class VpcdBridge:
    """Connects ``card`` to the vpcd reader listening on ``host:port`` and serves it until stopped.

    :meth:`run` blocks; :meth:`start` runs it in a daemon thread and :meth:`stop` removes the card
    (closes the connection) and joins the thread.  While vpcd is not listening (pcscd not started) or
    after the connection drops, the bridge reconnects with exponential backoff from ``min_backoff`` to
    ``max_backoff`` seconds.  Exceptions from the card are logged and answered with 6F00.
    """

    def __init__(self, card: Card, host: str = "127.0.0.1", port: int = 35963, *,
                 min_backoff: float = 0.05, max_backoff: float = 1.0, connect_timeout: float = 2.0):
        self.card = card
        self.host = host
        self.port = port
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"VpcdBridge({type(self.card).__name__} -> {self.host}:{self.port})"

    def start(self) -> VpcdBridge:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self!r} is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"vpcd-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (the reader sees the card removed) and end :meth:`run`."""
        self._stop.set()
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%r did not stop within %.1f s", self, timeout)
            self._thread = None

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def run(self) -> None:
        backoff = self.min_backoff
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            except OSError as exc:
                log.debug("%r: vpcd not reachable (%s); retrying in %.2f s", self, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sock = sock
            if self._stop.is_set():
                self._close(sock)
                break
            log.info("%r: card inserted", self)
            self.connected.set()
            try:
                self._serve(sock)
            except _Disconnected:
                if not self._stop.is_set():
                    log.info("%r: vpcd closed the connection; reconnecting", self)
            except OSError as exc:
                if not self._stop.is_set():
                    log.warning("%r: connection error %s; reconnecting", self, exc)
            finally:
                self.connected.clear()
                self._close(sock)
        log.info("%r: stopped", self)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
        try:
            sock.close()
        except OSError:
            pass

    def _serve(self, sock: socket.socket) -> None:
        card = self.card
        while True:
            (length,) = struct.unpack(">H", self._recv_exact(sock, 2))
            payload = self._recv_exact(sock, length) if length else b""
            if len(payload) == 1:
                reply = self._control(payload[0])
            elif payload:
                try:
                    reply = bytes(card.process_apdu(payload))
                    if len(reply) < 2:
                        log.error("%r: card returned %r (no status word) for %s", self, reply, payload.hex())
                        reply = _SW_UNKNOWN
                except Exception:
                    log.exception("%r: card raised on C-APDU %s", self, payload.hex().upper())
                    reply = _SW_UNKNOWN
            else:
                continue
            if reply is not None:
                sock.sendall(struct.pack(">H", len(reply)) + reply)

    def _control(self, code: int) -> bytes | None:
        card = self.card
        try:
            if code == VPCD_GET_ATR:
                return bytes(card.atr)
            if code == VPCD_POWER_ON:
                card.power_on()
            elif code == VPCD_POWER_OFF:
                card.power_off()
            elif code == VPCD_RESET:
                card.reset()
            else:
                log.warning("%r: unknown vpcd control byte %d ignored", self, code)
        except Exception:
            log.exception("%r: card raised on control %d", self, code)
        return None

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            if _QUICKACK is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise _Disconnected()
            buf += chunk
        return buf
