"""The APDU side of ES10 (SGP.22 §5.7, SGP.32 §5.9): ISD-R channel and STORE DATA chaining.

An :class:`Es10Session` opens a logical channel to the ISD-R (TERMINAL CAPABILITY, MANAGE CHANNEL,
SELECT by AID, as an LPA/IPAd does; or the transport's own +CCHO), sends each ES10 command as a chain
of STORE DATA blocks (GlobalPlatform Card Spec §11.11, P1 0x11 more / 0x91 last, P2 block number,
at most ``block_size`` bytes per block, by default the transport's own ``block_size`` or 255) and returns the complete response DER.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..apdu.base import ApduError, ApduTransport, ChannelTransport, Response, TransportError, transceive

ISD_R_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")
ECASD_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000200")
# TERMINAL CAPABILITY (ETSI TS 102 221 §11.1.19): A9 template, 83 = eUICC-related capabilities
# (SGP.32 §5.9.x: bit for local profile management / IPAd support).
DEFAULT_TERMINAL_CAPABILITY = bytes.fromhex("A903830107")


@dataclass
class ApduExchange:
    command: bytes
    response: bytes
    seconds: float


@dataclass
class Es10Exchange:
    """One ES10 function call as it crossed the interface."""

    function: str
    request: bytes
    response: bytes = b""
    sw: int = 0
    seconds: float = 0.0
    apdus: list[ApduExchange] = field(default_factory=list)
    error: str = ""


class _Recorder:
    """Transport wrapper that keeps the raw APDUs of the ES10 call in progress."""

    def __init__(self, inner: ApduTransport):
        self.inner = inner
        self.name = inner.name
        self.current: list[ApduExchange] | None = None

    def transmit(self, apdu: bytes) -> bytes:
        t0 = time.perf_counter()
        rapdu = self.inner.transmit(apdu)
        if self.current is not None:
            self.current.append(ApduExchange(apdu, rapdu, time.perf_counter() - t0))
        return rapdu

    def close(self) -> None:
        self.inner.close()


class Es10Session:
    """A logical channel to the ISD-R over any APDU transport."""

    def __init__(
        self,
        transport: ApduTransport,
        *,
        block_size: int | None = None,
        terminal_capability: bytes | None = DEFAULT_TERMINAL_CAPABILITY,
        aid: bytes = ISD_R_AID,
    ):
        if block_size is None:
            block_size = getattr(transport, "block_size", 255)
        if not 1 <= block_size <= 255:
            raise ValueError(f"block_size must be 1..255, got {block_size}")
        self._rec = _Recorder(transport)
        self.transport = transport
        self.block_size = block_size
        self.terminal_capability = terminal_capability
        self.aid = aid
        self.channel: int | None = None
        self.select_response: bytes = b""
        self.exchanges: list[Es10Exchange] = []
        self.apdu_count = 0

    @property
    def is_open(self) -> bool:
        return self.channel is not None

    def _cla(self, base: int) -> int:
        ch = self.channel or 0
        return base | ch if ch < 4 else (base & 0x80) | 0x40 | (ch - 4)

    def _send(self, apdu: bytes) -> Response:
        self.apdu_count += 1
        return transceive(self._rec, apdu)

    def open(self) -> "Es10Session":
        """TERMINAL CAPABILITY, MANAGE CHANNEL open, SELECT ISD-R (or the transport's own channel open)."""
        if self.channel is not None:
            return self
        if isinstance(self.transport, ChannelTransport):
            self.channel = self.transport.open_channel(self.aid)
            return self
        if self.terminal_capability is not None:
            tc = bytes([0x80, 0xAA, 0x00, 0x00, len(self.terminal_capability)]) + self.terminal_capability
            self._send(tc)  # informative: a card that does not know it answers 6D00, which is fine
        r = self._send(bytes.fromhex("0070000001"))
        if r.sw != 0x9000 or len(r.data) != 1:
            raise ApduError(r.sw, bytes.fromhex("0070000001"), "MANAGE CHANNEL open failed")
        self.channel = r.data[0]
        # Case 3 as T=0 requires (ISO 7816-3 §12.2): the FCP comes back through 61xx + GET RESPONSE.
        select = bytes([self._cla(0x00), 0xA4, 0x04, 0x00, len(self.aid)]) + self.aid
        r = self._send(select)
        if r.sw != 0x9000:
            ch, self.channel = self.channel, None
            self._close_channel(ch)
            raise ApduError(r.sw, select, "SELECT ISD-R failed (is this an eUICC? check the ISD-R AID)")
        self.select_response = r.data
        return self

    def _close_channel(self, channel: int) -> None:
        if channel:
            try:
                self._send(bytes([0x00, 0x70, 0x80, channel, 0x00]))
            except (TransportError, ApduError):
                pass

    def close(self) -> None:
        """Close the logical channel; never raises, so it is safe in ``finally``."""
        ch, self.channel = self.channel, None
        if ch is None:
            return
        if isinstance(self.transport, ChannelTransport):
            try:
                self.transport.close_channel(ch)
            except (TransportError, ApduError):
                pass
        else:
            self._close_channel(ch)

    def __enter__(self) -> "Es10Session":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def store_data(self, command: bytes, function: str = "") -> bytes:
        """Send one ES10 command (complete DER) by STORE DATA chaining; return the response DER."""
        if self.channel is None:
            self.open()
        ex = Es10Exchange(function=function or f"{command[:2].hex().upper()}", request=command)
        self.exchanges.append(ex)
        self._rec.current = ex.apdus
        t0 = time.perf_counter()
        try:
            blocks = [command[i : i + self.block_size] for i in range(0, len(command), self.block_size)] or [b""]
            for number, block in enumerate(blocks):
                last = number == len(blocks) - 1
                apdu = bytes([self._cla(0x80), 0xE2, 0x91 if last else 0x11, number & 0xFF, len(block)]) + block
                r = self._send(apdu)
                ex.sw = r.sw
                if not last and r.sw != 0x9000:
                    raise ApduError(r.sw, apdu, f"STORE DATA block {number} of {function or 'ES10 command'} refused")
            if r.sw != 0x9000:
                raise ApduError(r.sw, apdu, f"{function or 'ES10 command'} failed")
            ex.response = r.data
            return r.data
        except Exception as exc:
            ex.error = str(exc)
            raise
        finally:
            ex.seconds = time.perf_counter() - t0
            self._rec.current = None
