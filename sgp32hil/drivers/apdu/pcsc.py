"""PC/SC transport (pyscard over pcsc-lite / WinSCard): real USB readers and the vpcd virtual reader.

Connects in shared mode preferring T=0, the protocol eUICC clients use (ISO/IEC 7816-3 §10); T=1 is
tried only when the reader or card refuses T=0 (SCARD_E_PROTO_MISMATCH).  The transport passes raw
APDUs through: T=0 procedure bytes (61xx / 6Cxx) are resolved by
:func:`~sgp32hil.drivers.apdu.base.transceive`.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartcard import scard

from .base import TransportError

_PROTOCOL_NAMES = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNPOWERED_CARD}


@dataclass(frozen=True)
class ReaderInfo:
    """A PC/SC reader as seen by ``sgp32-hil readers``: name, whether a card is present, its ATR in hex."""

    name: str
    card_present: bool
    atr: str
    in_use_exclusively: bool = False


def _error_text(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).strip()} (0x{hresult & 0xFFFFFFFF:08X})"


def _establish_context() -> int:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        if hresult == scard.SCARD_E_NO_SERVICE:
            raise TransportError("PC/SC service not available: is pcscd running? " + _error_text(hresult))
        raise TransportError("cannot establish a PC/SC context: " + _error_text(hresult))
    return context


def _reader_names(context: int) -> list[str]:
    hresult, names = scard.SCardListReaders(context, [])
    if hresult in (scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_READER_UNAVAILABLE):
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise TransportError("cannot list PC/SC readers: " + _error_text(hresult))
    return list(names)


def list_readers() -> list[ReaderInfo]:
    """All PC/SC readers with card presence and ATR, read without connecting (SCardGetStatusChange)."""
    context = _establish_context()
    try:
        names = _reader_names(context)
        if not names:
            return []
        hresult, states = scard.SCardGetStatusChange(context, 0, [(n, scard.SCARD_STATE_UNAWARE) for n in names])
        if hresult != scard.SCARD_S_SUCCESS:
            raise TransportError("cannot read PC/SC reader states: " + _error_text(hresult))
        infos = []
        for name, event_state, atr in states:
            present = bool(event_state & scard.SCARD_STATE_PRESENT)
            infos.append(ReaderInfo(
                name=name,
                card_present=present,
                atr=bytes(atr).hex().upper() if present else "",
                in_use_exclusively=bool(event_state & scard.SCARD_STATE_EXCLUSIVE),
            ))
        return infos
    finally:
        scard.SCardReleaseContext(context)


def resolve_reader(reader: str | int, names: list[str]) -> str:
    """Pick a reader by index, exact name or unique case-insensitive substring; TransportError otherwise."""
    available = ", ".join(repr(n) for n in names) or "none"
    if isinstance(reader, int):
        if 0 <= reader < len(names):
            return names[reader]
        raise TransportError(f"no PC/SC reader with index {reader}; readers: {available}")
    if reader in names:
        return reader
    matches = [n for n in names if reader.lower() in n.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise TransportError(f"PC/SC reader {reader!r} is ambiguous: matches {', '.join(map(repr, matches))}")
    raise TransportError(f"no PC/SC reader matches {reader!r}; readers: {available}")


class PcscTransport:
    """:class:`~sgp32hil.drivers.apdu.base.ApduTransport` over a PC/SC reader (shared mode, T=0 first).

    ``reader`` is an index into the reader list, an exact reader name or a unique substring of one.
    Raises :class:`TransportError` naming the available readers when the reader does not exist, and
    saying so when no card is present.
    """

    def __init__(self, reader: str | int, *, allow_t1: bool = True):
        self._context = _establish_context()
        self._card: int | None = None
        try:
            self.reader = resolve_reader(reader, _reader_names(self._context))
            self.name = f"pcsc:{self.reader}"
            self._connect(allow_t1)
        except BaseException:
            scard.SCardReleaseContext(self._context)
            raise

    def _connect(self, allow_t1: bool) -> None:
        hresult, card, protocol = scard.SCardConnect(
            self._context, self.reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0)
        if hresult == scard.SCARD_E_PROTO_MISMATCH and allow_t1:
            hresult, card, protocol = scard.SCardConnect(
                self._context, self.reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1)
        if hresult in _CARD_GONE:
            raise TransportError(f"no card in PC/SC reader {self.reader!r}: {_error_text(hresult)}")
        if hresult != scard.SCARD_S_SUCCESS:
            raise TransportError(f"cannot connect to the card in {self.reader!r}: {_error_text(hresult)}")
        self._card = card
        self._protocol = protocol

    @property
    def protocol(self) -> str:
        """Negotiated protocol, ``"T=0"`` or ``"T=1"``."""
        return _PROTOCOL_NAMES.get(self._protocol, f"0x{self._protocol:X}")

    @property
    def atr(self) -> bytes:
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._require_card())
        if hresult != scard.SCARD_S_SUCCESS:
            raise TransportError(f"{self.name}: cannot read the ATR: {_error_text(hresult)}")
        return bytes(atr)

    def _require_card(self) -> int:
        if self._card is None:
            raise TransportError(f"{self.name}: transport is closed")
        return self._card

    def transmit(self, apdu: bytes) -> bytes:
        hresult, response = scard.SCardTransmit(self._require_card(), self._protocol, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            if hresult in _CARD_GONE:
                raise TransportError(f"{self.name}: card removed or unpowered: {_error_text(hresult)}")
            if hresult == scard.SCARD_W_RESET_CARD:
                raise TransportError(f"{self.name}: card was reset by another application: {_error_text(hresult)}")
            raise TransportError(f"{self.name}: transmit of {bytes(apdu)[:5].hex().upper()} failed: "
                                 f"{_error_text(hresult)}")
        return bytes(response)

    def reset(self, cold: bool = False) -> bytes:
        """Warm reset the card (or power cycle it when ``cold``) via SCardReconnect; returns the new ATR."""
        disposition = scard.SCARD_UNPOWER_CARD if cold else scard.SCARD_RESET_CARD
        hresult, protocol = scard.SCardReconnect(
            self._require_card(), scard.SCARD_SHARE_SHARED, self._protocol, disposition)
        if hresult != scard.SCARD_S_SUCCESS:
            raise TransportError(f"{self.name}: reset failed: {_error_text(hresult)}")
        self._protocol = protocol
        return self.atr

    def close(self) -> None:
        if self._card is not None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            self._card = None
        if self._context is not None:
            scard.SCardReleaseContext(self._context)
            self._context = None

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
