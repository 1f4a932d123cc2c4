"""APDU transport contract and T=0 response handling (ISO/IEC 7816-4 §5, ETSI TS 102 221 §7.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class TransportError(Exception):
    """The path to the card failed (reader gone, port vanished, timeout): an infrastructure error."""


class ApduError(Exception):
    """The card answered with a status word the caller did not accept."""

    def __init__(self, sw: int, command: bytes = b"", message: str = ""):
        self.sw = sw
        self.command = command
        text = message or f"card returned SW {sw:04X}"
        if command:
            text += f" to {command[:5].hex().upper()}"
        super().__init__(text)


@dataclass(frozen=True)
class Response:
    """A complete response: data after all GET RESPONSE rounds, and the final status word."""

    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000 or (self.sw >> 8) in (0x91, 0x92)


@runtime_checkable
class ApduTransport(Protocol):
    """One raw exchange with a card: C-APDU bytes in, R-APDU bytes (data || SW1 SW2) out."""

    name: str

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...


def channel_cla(cla: int) -> int:
    """Interindustry CLA (0x0n / 0x4n) carrying the same logical channel as ``cla`` (ISO 7816-4 §5.4.1)."""
    return cla & 0x4F if cla & 0x40 else cla & 0x03


def transceive(transport: ApduTransport, apdu: bytes, max_rounds: int = 64) -> Response:
    """Send one C-APDU and resolve T=0 procedure bytes on the host.

    61xx -> GET RESPONSE (same CLA channel bits, INS C0, Le=xx), concatenating data;
    6Cxx -> re-send with Le=xx.  Transports whose reader already does this simply never return 61xx.
    """
    data = b""
    command = apdu
    for _ in range(max_rounds):
        rapdu = transport.transmit(command)
        if len(rapdu) < 2:
            raise TransportError(f"{transport.name}: response shorter than a status word: {rapdu.hex()}")
        body, sw = rapdu[:-2], (rapdu[-2] << 8) | rapdu[-1]
        data += body
        sw1 = sw >> 8
        if sw1 == 0x61:
            command = bytes([channel_cla(apdu[0]), 0xC0, 0x00, 0x00, sw & 0xFF])
            continue
        if sw1 == 0x6C:
            command = apdu[:4] + bytes([sw & 0xFF]) if len(apdu) <= 5 else apdu[:-1] + bytes([sw & 0xFF])
            continue
        return Response(data, sw)
    raise TransportError(f"{transport.name}: more than {max_rounds} GET RESPONSE rounds for {apdu[:5].hex()}")


@runtime_checkable
class ChannelTransport(Protocol):
    """A transport whose far end manages logical channels itself (27.007 +CCHO/+CGLA/+CCHC).

    The ES10 client then skips MANAGE CHANNEL and SELECT and sends APDUs with the channel bits the
    transport expects.
    """

    name: str

    def open_channel(self, aid: bytes) -> int: ...

    def close_channel(self, channel: int) -> None: ...

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...
