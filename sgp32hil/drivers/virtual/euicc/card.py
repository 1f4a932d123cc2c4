"""ISD-R APDU layer of the software eUICC: the part of the card OS below the ES10 functions.

Implements :class:`~sgp32hil.drivers.virtual.card.Card` with the behaviour PC/SC clients (LPAs, IPAds,
modems) rely on:

- an ATR offering T=0 (ISO/IEC 7816-3 §8) with card-assigned logical channels advertised in the
  historical bytes (ISO/IEC 7816-4 §12.1.1.11, third software function table);
- CLA decoding for the basic and further interindustry classes and their proprietary counterparts
  (ISO/IEC 7816-4 §5.4.1, ETSI TS 102 221 §10.1.1), logical channels 0..19;
- MANAGE CHANNEL (ISO/IEC 7816-4 §11.1.2, ETSI TS 102 221 §11.1.17), SELECT by DF name
  (ISO/IEC 7816-4 §11.2.2, GlobalPlatform Card Spec §11.9), GET RESPONSE with T=0 procedure bytes
  61xx / 6Cxx (ISO/IEC 7816-4 §11.2.3 / §5.1.3), TERMINAL CAPABILITY (ETSI TS 102 221 §11.1.19),
  STATUS (ETSI TS 102 221 §11.1.2);
- STORE DATA block chaining (GlobalPlatform Card Spec §11.11, as profiled by SGP.22 §5.7.2 for ES10),
  handing each assembled command to an :class:`Es10Backend`.

The card never raises out of :meth:`EuiccCard.process_apdu`: every malformed command gets an ISO status
word, a failing backend gets 6F00 and the card stays usable.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)

ISD_R_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")

# TS=3B, T0=9F (TA1, TD1, 15 historical bytes), TA1=96 (Fi=512, Di=32), TD1=80 (T=0, TD2 follows),
# TD2=1F (T=15, TA3 follows), TA3=87 (clock stop high, classes A/B/C).  Historical bytes: category 80,
# card service data 31 E0, card capabilities 73 FE 21 1F (card- and IFD-assigned channel numbers,
# 8 or more channels), pre-issuing data 67 "SGP32HL".  TCK is appended by build_atr().
_ATR_BODY = bytes.fromhex("3B9F96801F87" "8031E073FE211F" "67" + b"SGP32HL".hex())


def build_atr(body: bytes = _ATR_BODY) -> bytes:
    """Append TCK (XOR of T0..last historical byte, ISO/IEC 7816-3 §8.2.5) to an ATR body."""
    tck = 0
    for b in body[1:]:
        tck ^= b
    return body + bytes([tck])


DEFAULT_ATR = build_atr()

MAX_CHANNELS = 20
MAX_BLOCK = 255
MAX_COMMAND = 64 * 1024 + 1024

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SM_NOT_SUPPORTED = 0x6882
SW_CHAINING_NOT_SUPPORTED = 0x6884
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_NO_MEMORY = 0x6A84
SW_WRONG_P1P2 = 0x6A86
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00

INS_MANAGE_CHANNEL = 0x70
INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
INS_TERMINAL_CAPABILITY = 0xAA
INS_STORE_DATA = 0xE2
INS_STATUS = 0xF2


class CardStatus(Exception):
    """Raised by an ES10 backend to answer a command with a status word instead of data (e.g. 6A88)."""

    def __init__(self, sw: int, message: str = ""):
        if not (0x6200 <= sw <= 0x6FFF or 0x9000 <= sw <= 0x9FFF):
            raise ValueError(f"not a status word a card may return: {sw:04X}")
        self.sw = sw
        super().__init__(message or f"SW {sw:04X}")


@runtime_checkable
class Es10Backend(Protocol):
    """The ES10 function layer behind the ISD-R.

    ``handle`` receives one complete ES10 command (all STORE DATA blocks joined, e.g. ``BF3E035C015A``)
    and the logical channel it arrived on, and returns the DER response (empty for none).  Raise
    :class:`CardStatus` to answer with a status word; any other exception becomes 6F00.
    """

    def handle(self, channel: int, command: bytes) -> bytes: ...


class ResetKind(enum.Enum):
    """Why the card state was reset: cold (power on after power off) or warm (RST while powered)."""

    COLD = "cold"
    WARM = "warm"


class ClaType(enum.Enum):
    """Interindustry (0x0n/0x4n, ISO/IEC 7816-4) or proprietary (0x8n/0xCn, ETSI / GlobalPlatform) class."""

    INTERINDUSTRY = "interindustry"
    PROPRIETARY = "proprietary"


@dataclass(frozen=True)
class Command:
    """A parsed short C-APDU (ISO/IEC 7816-4 §5.1): header, data field and Le (None when absent)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None
    channel: int
    cla_type: ClaType

    @property
    def ne(self) -> int:
        """Maximum number of response bytes expected (Le=00 means 256)."""
        if self.le is None:
            return 0
        return self.le or 256


@dataclass
class ChannelState:
    """Per logical channel: selected application, pending response data, partial STORE DATA command."""

    selected: bytes | None = None
    pending: bytes = b""
    store_data: bytearray = field(default_factory=bytearray)
    next_block: int = 0

    def drop_chain(self) -> None:
        self.store_data = bytearray()
        self.next_block = 0


class _Reject(Exception):
    def __init__(self, sw: int):
        self.sw = sw


def _sw(sw: int) -> bytes:
    return bytes([sw >> 8, sw & 0xFF])


def decode_cla(cla: int) -> tuple[int, ClaType]:
    """Logical channel and class type of a CLA byte (ISO/IEC 7816-4 §5.4.1, ETSI TS 102 221 §10.1.1).

    0x0n / 0x8n carry channels 0..3, 0x4n / 0xCn channels 4..19.  Secure messaging (0x04..0x0F, 0x6n,
    0x7n, 0x84..0x8F, 0xEn) gets 6882, command chaining (0x1n, 0x5n) 6884, everything else 6E00.
    """
    high = cla & 0xF0
    if high == 0x00 or high == 0x80:
        if cla & 0x0C:
            raise _Reject(SW_SM_NOT_SUPPORTED)
        return cla & 0x03, ClaType.PROPRIETARY if high else ClaType.INTERINDUSTRY
    if high == 0x40:
        return 4 + (cla & 0x0F), ClaType.INTERINDUSTRY
    if high == 0xC0:
        return 4 + (cla & 0x0F), ClaType.PROPRIETARY
    if high in (0x10, 0x50):
        raise _Reject(SW_CHAINING_NOT_SUPPORTED)
    if high in (0x60, 0x70, 0xE0):
        raise _Reject(SW_SM_NOT_SUPPORTED)
    raise _Reject(SW_CLA_NOT_SUPPORTED)


def parse_command(capdu: bytes) -> Command:
    """Split a short C-APDU into its fields (ISO/IEC 7816-4 §5.1, cases 1 to 4).

    6700 for fewer than 4 bytes or an Lc inconsistent with the length; extended-length APDUs
    (Lc=00 followed by data) are not supported and get 6700 too.  CLA errors as :func:`decode_cla`.
    """
    if len(capdu) < 4:
        raise _Reject(SW_WRONG_LENGTH)
    channel, cla_type = decode_cla(capdu[0])
    body = capdu[4:]
    if not body:
        data, le = b"", None
    elif len(body) == 1:
        data, le = b"", body[0]
    else:
        lc = body[0]
        if lc == 0:
            raise _Reject(SW_WRONG_LENGTH)
        if len(body) == 1 + lc:
            data, le = bytes(body[1:]), None
        elif len(body) == 2 + lc:
            data, le = bytes(body[1:-1]), body[-1]
        else:
            raise _Reject(SW_WRONG_LENGTH)
    return Command(capdu[0], capdu[1], capdu[2], capdu[3], data, le, channel, cla_type)


def ber_tlv_well_formed(data: bytes) -> bool:
    """True when ``data`` is a sequence of complete BER-TLV objects (ISO/IEC 7816-4 §5.2)."""
    i = 0
    n = len(data)
    while i < n:
        if data[i] in (0x00, 0xFF):
            return False
        if data[i] & 0x1F == 0x1F:
            i += 1
            while i < n and data[i] & 0x80:
                i += 1
        i += 1
        if i >= n:
            return False
        first = data[i]
        i += 1
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 3 or i + count > n:
                return False
            length = int.from_bytes(data[i:i + count], "big")
            i += count
        i += length
        if i > n:
            return False
    return True


def isd_r_fci(aid: bytes = ISD_R_AID, extra: bytes = b"") -> bytes:
    """SELECT response of the ISD-R: FCI template 6F with 84 (AID) and A5 (proprietary data, 9F65 =
    maximum command data length 255), as real eUICCs return it (GlobalPlatform Card Spec §11.9.3.1);
    ``extra`` TLVs are appended inside 6F (e.g. E0/E1 templates)."""
    proprietary = bytes.fromhex("9F6501FF")
    body = bytes([0x84, len(aid)]) + aid + bytes([0xA5, len(proprietary)]) + proprietary + extra
    if len(body) > 0x7F:
        return b"\x6F\x81" + bytes([len(body)]) + body
    return bytes([0x6F, len(body)]) + body


class EuiccCard:
    """The software eUICC's card OS up to the ISD-R: channels, SELECT, T=0 responses, STORE DATA.

    ``backend`` is the ES10 layer (see :class:`Es10Backend`).  ``on_reset`` callbacks run after every
    cold or warm reset with the :class:`ResetKind` (the eUICC uses this to complete a REFRESH).
    """

    def __init__(
        self,
        backend: Es10Backend,
        *,
        atr: bytes = DEFAULT_ATR,
        channels: int = MAX_CHANNELS,
        fci_extra: bytes = b"",
    ):
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {channels}")
        self.backend = backend
        self._atr = bytes(atr)
        self._channel_count = channels
        self.fci = isd_r_fci(extra=fci_extra)
        self.on_reset: list[Callable[[ResetKind], None]] = []
        self.terminal_capabilities: bytes | None = None
        self.powered = False
        self._channels: dict[int, ChannelState] = {0: ChannelState()}
        self._handlers: dict[int, Callable[[Command, ChannelState], bytes]] = {
            INS_MANAGE_CHANNEL: self._manage_channel,
            INS_SELECT: self._select,
            INS_GET_RESPONSE: self._get_response,
            INS_TERMINAL_CAPABILITY: self._terminal_capability,
            INS_STORE_DATA: self._store_data,
            INS_STATUS: self._status,
        }

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def open_channels(self) -> list[int]:
        return sorted(self._channels)

    def selected(self, channel: int) -> bytes | None:
        """AID selected on ``channel`` (None when the channel is closed or nothing is selected)."""
        state = self._channels.get(channel)
        return state.selected if state else None

    def power_on(self) -> None:
        self.powered = True
        self._reset_state(ResetKind.COLD)

    def power_off(self) -> None:
        self.powered = False
        self._channels = {0: ChannelState()}
        self.terminal_capabilities = None

    def reset(self) -> None:
        self.powered = True
        self._reset_state(ResetKind.WARM)

    def _reset_state(self, kind: ResetKind) -> None:
        self._channels = {0: ChannelState()}
        self.terminal_capabilities = None
        for hook in list(self.on_reset):
            try:
                hook(kind)
            except Exception:
                log.exception("on_reset hook %r failed", hook)

    def process_apdu(self, capdu: bytes) -> bytes:
        """Answer one C-APDU with an R-APDU (data || SW1 SW2); never raises."""
        try:
            capdu = bytes(capdu)
            if len(capdu) < 4:
                return _sw(SW_WRONG_LENGTH)
            channel, _ = decode_cla(capdu[0])
            handler = self._handlers.get(capdu[1])
            if handler is None:
                return _sw(SW_INS_NOT_SUPPORTED)
            state = self._channels.get(channel)
            if state is None:
                return _sw(SW_CHANNEL_NOT_SUPPORTED)
            cmd = parse_command(capdu)
            if cmd.ins != INS_GET_RESPONSE:
                state.pending = b""
            return handler(cmd, state)
        except _Reject as reject:
            return _sw(reject.sw)
        except Exception:
            log.exception("card error on C-APDU %s", bytes(capdu).hex().upper())
            return _sw(SW_UNKNOWN)

    def _respond(self, state: ChannelState, data: bytes) -> bytes:
        """T=0 case 4: announce response data with 61xx for GET RESPONSE (ISO/IEC 7816-4 §5.1.3)."""
        if not data:
            return _sw(SW_OK)
        state.pending = data
        return _sw(0x6100 | (len(data) if len(data) < 256 else 0))

    def _deliver(self, state: ChannelState, data: bytes, cmd: Command) -> bytes:
        """T=0 case 2: return up to Ne bytes; 6Cxx when Le exceeds the available data, 61xx for the rest.

        Le=00 is read as "up to 256" so that clients using T=1 conventions also work.
        """
        if cmd.le is None or (cmd.le and cmd.le > len(data)):
            if not data:
                return _sw(SW_OK) if cmd.le is None else _sw(SW_WRONG_LENGTH)
            return _sw(0x6C00 | (len(data) if len(data) < 256 else 0))
        chunk, rest = data[: cmd.ne], data[cmd.ne:]
        state.pending = rest
        if rest:
            return chunk + _sw(0x6100 | (len(rest) if len(rest) < 256 else 0))
        return chunk + _sw(SW_OK)

    @staticmethod
    def _require(cmd: Command, cla_type: ClaType | None, *, data: bool | None) -> None:
        """6E00 for a class this instruction is not defined in, 6700 for a missing or unexpected data field.

        Le on case 3/4 commands is not checked: under T=0 response data always comes by GET RESPONSE.
        """
        if cla_type is not None and cmd.cla_type is not cla_type:
            raise _Reject(SW_CLA_NOT_SUPPORTED)
        if data is True and not cmd.data or data is False and cmd.data:
            raise _Reject(SW_WRONG_LENGTH)

    def _manage_channel(self, cmd: Command, state: ChannelState) -> bytes:
        """MANAGE CHANNEL open (P1=00; P2=00 card assigns, P2=n given) / close (P1=80, P2=n)."""
        self._require(cmd, ClaType.INTERINDUSTRY, data=False)
        if cmd.p1 == 0x00:
            if cmd.p2 == 0x00:
                free = next((n for n in range(1, self._channel_count) if n not in self._channels), None)
                if cmd.le is None or cmd.le > 1:
                    return _sw(0x6C01)
                if free is None:
                    return _sw(SW_FUNCTION_NOT_SUPPORTED)
                self._open(free, cmd.channel, state)
                return bytes([free]) + _sw(SW_OK)
            if cmd.p2 >= self._channel_count:
                return _sw(SW_WRONG_P1P2)
            if cmd.p2 in self._channels:
                return _sw(SW_WRONG_P1P2)
            if cmd.le not in (None, 0):
                return _sw(SW_WRONG_LENGTH)
            self._open(cmd.p2, cmd.channel, state)
            return _sw(SW_OK)
        if cmd.p1 == 0x80:
            if cmd.le not in (None, 0):
                return _sw(SW_WRONG_LENGTH)
            target = cmd.p2 or cmd.channel
            if target == 0 or target >= self._channel_count or target not in self._channels:
                return _sw(SW_WRONG_P1P2)
            del self._channels[target]
            return _sw(SW_OK)
        return _sw(SW_WRONG_P1P2)

    def _open(self, channel: int, origin: int, origin_state: ChannelState) -> None:
        inherited = origin_state.selected if origin != 0 else None
        self._channels[channel] = ChannelState(selected=inherited)

    def _select(self, cmd: Command, state: ChannelState) -> bytes:
        """SELECT by DF name (P1=04); P2 occurrence first/only, response FCI/FCP (00/04) or none (0C)."""
        self._require(cmd, ClaType.INTERINDUSTRY, data=None)
        if cmd.p1 != 0x04:
            return _sw(SW_WRONG_P1P2)
        occurrence, response = cmd.p2 & 0x03, cmd.p2 & 0x0C
        if cmd.p2 & 0xF0 or response == 0x08:
            return _sw(SW_WRONG_P1P2)
        if len(cmd.data) > 16:
            return _sw(SW_WRONG_LENGTH)
        if occurrence in (0x02, 0x03) or len(cmd.data) < 5 or not ISD_R_AID.startswith(cmd.data):
            return _sw(SW_NOT_FOUND)
        state.selected = ISD_R_AID
        state.drop_chain()
        if response == 0x0C:
            return _sw(SW_OK)
        return self._respond(state, self.fci)

    def _get_response(self, cmd: Command, state: ChannelState) -> bytes:
        """GET RESPONSE under CLA 0x0n/0x4n or 0x8n/0xCn: the data announced by the last 61xx."""
        self._require(cmd, None, data=False)
        if cmd.p1 or cmd.p2:
            return _sw(SW_WRONG_P1P2)
        if not state.pending:
            return _sw(SW_CONDITIONS)
        if cmd.le is None:
            return _sw(SW_WRONG_LENGTH)
        return self._deliver(state, state.pending, cmd)

    def _terminal_capability(self, cmd: Command, state: ChannelState) -> bytes:
        """TERMINAL CAPABILITY: store the A9 terminal capability template for the ES10 layer."""
        self._require(cmd, ClaType.PROPRIETARY, data=True)
        if cmd.p1 or cmd.p2:
            return _sw(SW_WRONG_P1P2)
        if cmd.data[0] != 0xA9 or not ber_tlv_well_formed(cmd.data):
            return _sw(SW_WRONG_DATA)
        self.terminal_capabilities = cmd.data
        return _sw(SW_OK)

    def _status(self, cmd: Command, state: ChannelState) -> bytes:
        """STATUS: P2=00 FCI of the selected application, 01 its AID (tag 84), 0C no data."""
        self._require(cmd, ClaType.PROPRIETARY, data=False)
        if cmd.p1 not in (0x00, 0x01, 0x02) or cmd.p2 not in (0x00, 0x01, 0x0C):
            return _sw(SW_WRONG_P1P2)
        if cmd.p2 == 0x0C:
            return _sw(SW_OK)
        if state.selected is None:
            return _sw(SW_CONDITIONS)
        data = self.fci if cmd.p2 == 0x00 else bytes([0x84, len(state.selected)]) + state.selected
        return self._deliver(state, data, cmd)

    def _store_data(self, cmd: Command, state: ChannelState) -> bytes:
        """STORE DATA: P1 b8 = last block, b7-b6 (encryption) must be 0; P2 = block number from 00."""
        self._require(cmd, ClaType.PROPRIETARY, data=True)
        if state.selected != ISD_R_AID:
            return _sw(SW_CONDITIONS)
        if cmd.p1 & 0x60:
            state.drop_chain()
            return _sw(SW_WRONG_P1P2)
        if cmd.p2 == 0:
            state.drop_chain()
        elif cmd.p2 != state.next_block:
            state.drop_chain()
            return _sw(SW_WRONG_P1P2)
        if len(state.store_data) + len(cmd.data) > MAX_COMMAND:
            state.drop_chain()
            return _sw(SW_NO_MEMORY)
        state.store_data += cmd.data
        state.next_block = (cmd.p2 + 1) & 0xFF
        if not cmd.p1 & 0x80:
            return _sw(SW_OK)
        command = bytes(state.store_data)
        state.drop_chain()
        try:
            response = self.backend.handle(cmd.channel, command)
        except CardStatus as status:
            return _sw(status.sw)
        except Exception:
            log.exception("ES10 backend failed on %s", command[:16].hex().upper())
            return _sw(SW_UNKNOWN)
        if not isinstance(response, (bytes, bytearray)):
            log.error("ES10 backend returned %r instead of bytes", type(response).__name__)
            return _sw(SW_UNKNOWN)
        return self._respond(state, bytes(response))
