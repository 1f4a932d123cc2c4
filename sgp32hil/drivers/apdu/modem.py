"""APDUs through a cellular module: +CCHO/+CGLA/+CCHC (27.007 §8.45, §8.43, §8.46) or +CSIM (§8.17).

``ModemApduTransport(modem, path="auto")`` probes the module with a real +CCHO to the ISD-R followed by
+CCHC (``=?`` fails on working modems, lpac #300) and returns a :class:`CglaTransport` (a
:class:`~.base.ChannelTransport`: the MT owns the channel) or, failing that, a :class:`CsimTransport` (raw
TPDUs on the basic channel; the ES10 session sends MANAGE CHANNEL and SELECT itself).  Both leave 61xx/6Cxx
to :func:`~.base.transceive` on the host, expose ``block_size`` for ES10 STORE DATA segmentation
(≤ ``segment`` bytes), raise :class:`~.base.TransportError` for port and MT failures, and let the card's
status words through for :class:`~.base.ApduError` handling above.
"""

from __future__ import annotations

import logging

from ..at.driver import Modem
from ..at.errors import AtChannelError, AtError, AtTimeout, PortGone
from ..at.parsers import ParseError, SessionId
from .base import Response, TransportError, transceive

log = logging.getLogger(__name__)

ISD_R_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")
NO_CHANNEL_CME = (3, 14, 100)
PATHS = ("auto", "cgla", "csim")


class ModemTransportError(TransportError):
    """The module failed the exchange (+CME ERROR, timeout, port gone); ``cause`` is the AT-layer error."""

    def __init__(self, message: str, cause: Exception | None = None):
        self.cause = cause
        super().__init__(message)


def _no_channel(exc: AtError) -> bool:
    return exc.code in NO_CHANNEL_CME or bool(exc.key and "channel" in exc.key)


def _set_channel_bits(cla: int, channel: int) -> int:
    if channel < 4:
        return (cla & 0xBC if not cla & 0x40 else cla & 0x80) | channel
    return (cla & 0x80) | 0x40 | (channel - 4)


class ModemApduTransport:
    """Factory and common base: ``ModemApduTransport(modem, path=…, segment=120)`` is a CGLA or CSIM transport."""

    name: str

    def __new__(cls, modem: Modem, *, path: str = "auto", segment: int = 120, aid: bytes = ISD_R_AID):
        if cls is not ModemApduTransport:
            return super().__new__(cls)
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
        apdu = modem.profile.apdu
        if path == "cgla" or (path == "auto" and apdu.ccho and apdu.cgla):
            transport = CglaTransport(modem, segment=segment, aid=aid)
            try:
                transport.probe()
                return transport
            except TransportError as exc:
                if path == "cgla" or not apdu.csim:
                    raise
                log.info("%s: CGLA path unusable (%s); falling back to +CSIM", modem.channel.identity, exc)
        return CsimTransport(modem, segment=segment)

    def __init__(self, modem: Modem, *, path: str = "auto", segment: int = 120, aid: bytes = ISD_R_AID):
        if getattr(self, "_ready", False):
            return  # already initialised by __new__'s probe
        self._ready = True
        if not 1 <= segment <= 255:
            raise ValueError(f"segment must be 1..255 bytes, got {segment}")
        self.modem = modem
        self.segment = segment
        self.aid = aid
        self._closed = False

    @property
    def block_size(self) -> int:
        """STORE DATA block size for :class:`~sgp32hil.drivers.es10.session.Es10Session`: ≤ segment and the MT's APDU limit."""
        return max(1, min(self.segment, self.modem.profile.apdu.max_apdu - 6))

    def session(self, **kwargs):
        """An :class:`~sgp32hil.drivers.es10.session.Es10Session` over this transport using :attr:`block_size`."""
        from ..es10.session import Es10Session

        return Es10Session(self, block_size=self.block_size, **kwargs)

    def client(self):
        """An :class:`~sgp32hil.drivers.es10.client.Es10Client` over this transport using :attr:`block_size`."""
        from ..es10.client import Es10Client

        return Es10Client(self, block_size=self.block_size)

    def exchange(self, apdu: bytes) -> Response:
        """One command with 61xx/6Cxx resolved on the host."""
        return transceive(self, apdu)

    def _at_call(self, what: str, fn, *args, **kwargs):
        if self._closed:
            raise TransportError(f"{self.name}: transport is closed")
        try:
            return fn(*args, **kwargs)
        except AtError as exc:
            raise ModemTransportError(f"{self.name}: {what}: {exc}", exc) from exc
        except (AtTimeout, PortGone) as exc:
            raise ModemTransportError(f"{self.name}: {what}: {exc}", exc) from exc
        except AtChannelError as exc:
            raise ModemTransportError(f"{self.name}: {what}: {exc}", exc) from exc
        except ParseError as exc:
            raise ModemTransportError(f"{self.name}: {what}: unparsable reply: {exc}", exc) from exc


class CglaTransport(ModemApduTransport):
    """:class:`~.base.ChannelTransport` over +CCHO/+CGLA/+CCHC with leak tracking and recovery.

    ``open_channel`` returns the number whose channel bits the caller puts into CLA: the session id when it is
    a valid logical channel (1..19), else a local handle.  ``transmit`` maps CLA back to the session and
    rewrites the channel bits per the profile's ``cla_policy`` (passthrough, zero, channel).
    """

    def __init__(self, modem: Modem, *, segment: int = 120, aid: bytes = ISD_R_AID, **_: object):
        if getattr(self, "_ready", False):
            return
        super().__init__(modem, segment=segment, aid=aid)
        self.name = f"cgla:{modem.channel.identity}"
        self.sessions: dict[int, SessionId] = {}
        self.leaked: list[SessionId] = []

    def probe(self) -> None:
        """A real +CCHO to the ISD-R then +CCHC (not ``=?``); raises TransportError when the path is unusable."""
        handle = self.open_channel(self.aid)
        self.close_channel(handle)

    def _session_kind(self) -> str:
        kind = self.modem.profile.apdu.session_id
        return "int" if kind == "bare" else kind

    def _ccho(self, aid: bytes) -> SessionId:
        return self.modem.open_logical_channel(aid)

    def _recover_leaks(self) -> None:
        for sid in list(self.leaked):
            try:
                self.modem.close_logical_channel(sid)
            except AtChannelError as exc:
                log.info("%s: closing leaked session %s: %s", self.name, sid.raw, exc)
            self.leaked.remove(sid)

    def _close_blind(self) -> None:
        """lpac-style recovery: close sessions 1..4 whether or not we know them."""
        for n in range(1, 5):
            raw = self.modem.profile.session_token(n)
            try:
                self.modem.close_logical_channel(SessionId(raw, n))
            except AtChannelError:
                pass
        self.sessions.clear()

    def open_channel(self, aid: bytes) -> int:
        if self._closed:
            raise TransportError(f"{self.name}: transport is closed")
        self._recover_leaks()
        try:
            sid = self._ccho(aid)
        except AtError as exc:
            if not _no_channel(exc):
                raise ModemTransportError(f"{self.name}: +CCHO: {exc}", exc) from exc
            log.warning("%s: +CCHO: %s; closing channels 1..4 and retrying once", self.name, exc)
            self._close_blind()
            sid = self._at_call("+CCHO (retry)", self._ccho, aid)
        except (AtChannelError, ParseError) as exc:
            raise ModemTransportError(f"{self.name}: +CCHO: {exc}", exc) from exc
        handle = sid.value if 1 <= sid.value <= 19 else next(h for h in range(1, 20) if h not in self.sessions)
        self.sessions[handle] = sid
        return handle

    def close_channel(self, channel: int) -> None:
        sid = self.sessions.pop(channel, None)
        if sid is None:
            return
        try:
            self._at_call("+CCHC", self.modem.close_logical_channel, sid)
        except ModemTransportError:
            self.leaked.append(sid)
            raise

    def _route(self, cla: int) -> tuple[int, SessionId]:
        ch = cla & 0x03 if not cla & 0x40 else 4 + (cla & 0x0F)
        if ch in self.sessions:
            return ch, self.sessions[ch]
        if len(self.sessions) == 1:
            return next(iter(self.sessions.items()))
        raise TransportError(f"{self.name}: no open session for CLA {cla:02X} (open: {sorted(self.sessions)})")

    def _cla(self, cla: int, sid: SessionId) -> int:
        policy = self.modem.profile.apdu.cla_policy
        if policy == "zero":
            return _set_channel_bits(cla, 0)
        if policy == "channel":
            return _set_channel_bits(cla, sid.value if 0 <= sid.value <= 19 else 0)
        return cla

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            raise TransportError(f"{self.name}: C-APDU shorter than a header: {apdu.hex()}")
        _, sid = self._route(apdu[0])
        command = bytes([self._cla(apdu[0], sid)]) + bytes(apdu[1:])
        try:
            return self._at_call("+CGLA", self.modem.transmit_logical, sid, command)
        except ModemTransportError as exc:
            if isinstance(exc.cause, AtTimeout):
                self.leaked.append(sid)
                self.sessions = {h: s for h, s in self.sessions.items() if s is not sid}
            raise

    def close(self) -> None:
        """Close every session this transport opened (and known leaks); never raises."""
        if self._closed:
            return
        for handle in list(self.sessions):
            try:
                self.close_channel(handle)
            except TransportError as exc:
                log.info("%s: close: %s", self.name, exc)
        try:
            self._recover_leaks()
        except Exception as exc:  # closing must never raise
            log.info("%s: close: %s", self.name, exc)
        self._closed = True


class CsimTransport(ModemApduTransport):
    """Raw TPDUs on the basic channel through +CSIM; the ES10 session does MANAGE CHANNEL, SELECT and GET RESPONSE."""

    def __init__(self, modem: Modem, *, segment: int = 120, **_: object):
        if getattr(self, "_ready", False):
            return
        super().__init__(modem, segment=segment)
        self.name = f"csim:{modem.channel.identity}"

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            raise TransportError(f"{self.name}: C-APDU shorter than a header: {apdu.hex()}")
        return self._at_call("+CSIM", self.modem.csim, bytes(apdu))

    def close(self) -> None:
        self._closed = True
