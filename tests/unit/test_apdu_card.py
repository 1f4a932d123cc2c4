"""ISD-R APDU layer of the software eUICC, in process: every APDU behaviour and status word."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smartcard.ATR import ATR

from sgp32hil.drivers.apdu.base import transceive
from sgp32hil.drivers.apdu.inprocess import InProcessTransport
from sgp32hil.drivers.apdu.trace import TracingTransport
from sgp32hil.drivers.virtual.card import Card
from sgp32hil.drivers.virtual.echo import EchoCard
from sgp32hil.drivers.virtual.euicc.card import (
    DEFAULT_ATR,
    ISD_R_AID,
    CardStatus,
    Es10Backend,
    EuiccCard,
    ResetKind,
    isd_r_fci,
)

EID = bytes.fromhex("89049032123451234512345678901235")
GET_EID = bytes.fromhex("BF3E035C015A")
EID_RESPONSE = bytes.fromhex("BF3E125A10") + EID
SELECT_ISDR = "00A4040410" + ISD_R_AID.hex()
FCI = isd_r_fci()


class ScriptedBackend:
    """Test ES10 backend: GetEID answers, BF43 raises 6A88, BF99 crashes, anything else is echoed."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bytes]] = []

    def handle(self, channel: int, command: bytes) -> bytes:
        self.calls.append((channel, command))
        if command == GET_EID:
            return EID_RESPONSE
        if command.startswith(b"\xBF\x43"):
            raise CardStatus(0x6A88, "reference data not found")
        if command.startswith(b"\xBF\x99"):
            raise RuntimeError("backend bug")
        return command


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def card(backend) -> EuiccCard:
    card = EuiccCard(backend)
    card.power_on()
    return card


def run(card: EuiccCard, *script: str) -> list[str]:
    return [card.process_apdu(bytes.fromhex(c)).hex().upper() for c in script]


def sw_of(rapdu: str) -> str:
    return rapdu[-4:]


def test_protocol_conformance(card, backend):
    assert isinstance(card, Card)
    assert isinstance(backend, Es10Backend)
    assert isinstance(EchoCard(), Card)


def test_atr_offers_t0_first_and_has_valid_checksum():
    atr = ATR(list(DEFAULT_ATR))
    assert atr.isT0Supported()
    assert not atr.isT1Supported()
    assert atr.checksumOK
    assert atr.TD[0] & 0x0F == 0


@pytest.mark.parametrize("script, expected", [
    # SELECT ISD-R: 61xx then FCI by GET RESPONSE, for P2 = 00 / 04; 0C gives no data.
    (["00A4040010" + ISD_R_AID.hex(), "00C0000000"], [f"61{len(FCI):02X}", FCI.hex().upper() + "9000"]),
    ([SELECT_ISDR, f"00C00000{len(FCI):02X}"], [f"61{len(FCI):02X}", FCI.hex().upper() + "9000"]),
    ([SELECT_ISDR + "00", f"80C00000{len(FCI):02X}"], [f"61{len(FCI):02X}", FCI.hex().upper() + "9000"]),
    (["00A4040C10" + ISD_R_AID.hex()], ["9000"]),
    (["00A404000E" + ISD_R_AID[:14].hex()], [f"61{len(FCI):02X}"]),
    # GET RESPONSE: short Le -> 61 with the rest, long Le -> 6Cxx, nothing pending -> 6985.
    ([SELECT_ISDR, "00C0000010", f"00C00000{len(FCI) - 16:02X}"],
     [f"61{len(FCI):02X}", FCI[:16].hex().upper() + f"61{len(FCI) - 16:02X}", FCI[16:].hex().upper() + "9000"]),
    ([SELECT_ISDR, "00C00000FF", f"00C00000{len(FCI):02X}"],
     [f"61{len(FCI):02X}", f"6C{len(FCI):02X}", FCI.hex().upper() + "9000"]),
    (["00C0000010"], ["6985"]),
    ([SELECT_ISDR, "00C0010010"], [f"61{len(FCI):02X}", "6A86"]),
    ([SELECT_ISDR, "00C00000"], [f"61{len(FCI):02X}", "6700"]),
    # any other command discards the pending response
    ([SELECT_ISDR, "80AA000005A903830107", "00C0000010"], [f"61{len(FCI):02X}", "9000", "6985"]),
    # SELECT errors
    (["00A4040010A0000005591010FFFFFFFF8900000200"], ["6A82"]),
    (["00A4040003A00000"], ["6A82"]),
    (["00A4000002" "3F00"], ["6A86"]),
    (["00A4041010" + ISD_R_AID.hex()], ["6A86"]),
    (["00A4040210" + ISD_R_AID.hex()], ["6A82"]),
    (["80A4040010" + ISD_R_AID.hex()], ["6E00"]),
    (["00A4040011" + ISD_R_AID.hex() + "01"], ["6700"]),
    # MANAGE CHANNEL: card assigns / given channel / close
    (["0070000001", "0070000001", "0070800100", "0070000001"], ["019000", "029000", "9000", "019000"]),
    (["0070000100", "0070000001"], ["9000", "029000"]),
    (["00700003", "03A4040010" + ISD_R_AID.hex()], ["9000", f"61{len(FCI):02X}"]),
    (["00700013", "4FA4040010" + ISD_R_AID.hex(), "4FC0000000"],
     ["9000", f"61{len(FCI):02X}", FCI.hex().upper() + "9000"]),
    (["00700014"], ["6A86"]),
    (["0070000100", "0070000100"], ["9000", "6A86"]),
    (["0070800100"], ["6A86"]),
    (["0070800000"], ["6A86"]),
    (["00700000"], ["6C01"]),
    (["0070000002"], ["6C01"]),
    (["0070400000"], ["6A86"]),
    (["0070000101AA"], ["6700"]),
    (["8070000001"], ["6E00"]),
    # commands on a channel that is not open
    (["01A4040010" + ISD_R_AID.hex()], ["6881"]),
    (["C1E2910003BF2200"], ["6881"]),
    # TERMINAL CAPABILITY on any channel, selected or not
    (["80AA000005A903830107"], ["9000"]),
    (["0070000001", "81AA000005A903830107"], ["019000", "9000"]),
    (["80AA000105A903830107"], ["6A86"]),
    (["80AA000005A803830107"], ["6A80"]),
    (["80AA000005A904830107"], ["6A80"]),
    (["80AA0000"], ["6700"]),
    (["00AA000005A903830107"], ["6E00"]),
    # STORE DATA: single block, status from the backend, crash -> 6F00 and still usable
    ([SELECT_ISDR, "80E2910006" + GET_EID.hex(), "00C0000015"],
     [f"61{len(FCI):02X}", "6115", EID_RESPONSE.hex().upper() + "9000"]),
    ([SELECT_ISDR, "80E2910003BF4300"], [f"61{len(FCI):02X}", "6A88"]),
    ([SELECT_ISDR, "80E2910003BF9900", "80E2910003BF2200"], [f"61{len(FCI):02X}", "6F00", "6103"]),
    ([SELECT_ISDR, "80E2900003BF2200"], [f"61{len(FCI):02X}", "6103"]),
    ([SELECT_ISDR, "80E2910003BF220000"], [f"61{len(FCI):02X}", "6103"]),
    # STORE DATA errors
    (["80E2910003BF2200"], ["6985"]),
    (["00A4040010A0000005591010FFFFFFFF8900000200", "80E2910003BF2200"], ["6A82", "6985"]),
    ([SELECT_ISDR, "80E2110103BF2200"], [f"61{len(FCI):02X}", "6A86"]),
    ([SELECT_ISDR, "80E2D10003BF2200"], [f"61{len(FCI):02X}", "6A86"]),
    ([SELECT_ISDR, "80E29100"], [f"61{len(FCI):02X}", "6700"]),
    ([SELECT_ISDR, "80E2910004BF2200"], [f"61{len(FCI):02X}", "6700"]),
    ([SELECT_ISDR, "00E2910003BF2200"], [f"61{len(FCI):02X}", "6E00"]),
    ([SELECT_ISDR, "84E2910003BF2200"], [f"61{len(FCI):02X}", "6882"]),
    # generic ISO errors
    (["00"], ["6700"]),
    (["00A404"], ["6700"]),
    (["A0A4000002" "3F00"], ["6E00"]),
    (["FFA4000002" "3F00"], ["6E00"]),
    (["20A4040010" + ISD_R_AID.hex()], ["6E00"]),
    (["10A4040010" + ISD_R_AID.hex()], ["6884"]),
    (["0CA4040010" + ISD_R_AID.hex()], ["6882"]),
    (["00B0000000"], ["6D00"]),
    (["80CA9F7F00"], ["6D00"]),
    (["0060000000"], ["6D00"]),
    (["00A4040000" + "AA"], ["6700"]),
    # STATUS
    (["80F2000C00"], ["9000"]),
    (["80F2000000"], ["6985"]),
    ([SELECT_ISDR, "80F2000120", "80F2000112"],
     [f"61{len(FCI):02X}", "6C12", "8410" + ISD_R_AID.hex().upper() + "9000"]),
])
def test_apdu_table(card, script, expected):
    assert run(card, *script) == expected


def test_fci_is_gp_fci_template_with_aid():
    assert FCI[0] == 0x6F and FCI[1] == len(FCI) - 2
    assert FCI[2:4] == b"\x84\x10" and FCI[4:20] == ISD_R_AID
    assert FCI[20] == 0xA5


def test_terminal_capability_is_stored_and_cleared_by_reset(card):
    run(card, "80AA000005A903830107")
    assert card.terminal_capabilities == bytes.fromhex("A903830107")
    card.reset()
    assert card.terminal_capabilities is None


def test_store_data_chaining_600_bytes(card, backend):
    command = bytes.fromhex("BF2482025B") + bytes(range(256)) * 2 + bytes(600 - 5 - 512)
    assert len(command) == 600
    blocks = [command[i:i + 255] for i in range(0, len(command), 255)]
    script = ["0070000001", "01A4040410" + ISD_R_AID.hex()]
    for n, block in enumerate(blocks):
        p1 = 0x91 if n == len(blocks) - 1 else 0x11
        script.append(f"81E2{p1:02X}{n:02X}{len(block):02X}" + block.hex())
    out = run(card, *script)
    assert out[2:] == ["9000", "9000", "6100"]
    assert backend.calls == [(1, command)]
    data = b""
    for le in (0, 0, 88):
        rapdu = card.process_apdu(bytes([0x01, 0xC0, 0, 0, le]))
        data += rapdu[:-2]
    assert rapdu[-2:] == b"\x90\x00"
    assert data == command


def test_store_data_out_of_order_block_drops_partial_command(card, backend):
    out = run(card, SELECT_ISDR, "80E2110002BF22", "80E2910203000000", "80E2910101AA")
    assert out[1:] == ["9000", "6A86", "6A86"]
    assert backend.calls == []
    assert run(card, "80E2110002BF22", "80E2910101" + "00") == ["9000", "6103"]
    assert backend.calls == [(0, bytes.fromhex("BF2200"))]


def test_store_data_block_zero_restarts_the_command(card, backend):
    run(card, SELECT_ISDR, "80E2110002BF22")
    assert run(card, "80E2910003BF2000") == ["6103"]
    assert backend.calls == [(0, bytes.fromhex("BF2000"))]


def test_store_data_chains_are_per_channel(card, backend):
    run(card, "0070000001", SELECT_ISDR, "01A4040410" + ISD_R_AID.hex())
    assert run(card, "80E2110001BF", "81E2110001BF", "80E2910102" "2200", "81E2910102" "2000") == [
        "9000", "9000", "6103", "6103"]
    assert backend.calls == [(0, bytes.fromhex("BF2200")), (1, bytes.fromhex("BF2000"))]


def test_selection_is_per_channel_and_inherited_only_from_non_basic_channels(card):
    run(card, SELECT_ISDR)
    assert run(card, "0070000001") == ["019000"]
    assert card.selected(0) == ISD_R_AID and card.selected(1) is None
    run(card, "01A4040C10" + ISD_R_AID.hex())
    assert run(card, "0170000001") == ["029000"]
    assert card.selected(2) == ISD_R_AID


def test_channels_run_out_with_6a81(card):
    for n in range(1, 20):
        assert run(card, "0070000001") == [f"{n:02X}9000"]
    assert run(card, "0070000001") == ["6A81"]


def test_fewer_channels_configured():
    card = EuiccCard(ScriptedBackend(), channels=4)
    card.power_on()
    assert run(card, "0070000001", "0070000001", "0070000001", "0070000001") == ["019000", "029000", "039000", "6A81"]
    assert run(card, "00700004") == ["6A86"]


@pytest.mark.parametrize("event", ["power_off", "reset"])
def test_power_off_and_reset_close_channels_and_clear_selection(card, event):
    kinds = []
    card.on_reset.append(kinds.append)
    run(card, "0070000001", "0070000002", SELECT_ISDR, "80E2110001BF")
    getattr(card, event)()
    if event == "power_off":
        card.power_on()
    assert card.open_channels == [0]
    assert card.selected(0) is None
    assert kinds == [ResetKind.COLD if event == "power_off" else ResetKind.WARM]
    assert run(card, "81E2910003BF2200", "80E2910003BF2200") == ["6881", "6985"]


def test_failing_reset_hook_does_not_break_the_card(card):
    card.on_reset.append(lambda kind: 1 / 0)
    card.reset()
    assert run(card, SELECT_ISDR) == [f"61{len(FCI):02X}"]


def test_backend_returning_non_bytes_is_6f00(card):
    class Bad:
        def handle(self, channel, command):
            return "not bytes"

    card.backend = Bad()
    assert run(card, SELECT_ISDR, "80E2910003BF2200") == [f"61{len(FCI):02X}", "6F00"]


def test_card_status_rejects_non_status_words():
    with pytest.raises(ValueError):
        CardStatus(0x1234)
    assert CardStatus(0x6A88).sw == 0x6A88


@pytest.mark.parametrize("get_response_cla", [0x00, 0x80])
def test_t0_transceive_through_in_process_transport(backend, get_response_cla):
    card = EuiccCard(backend)
    sent: list[bytes] = []

    class ClaRewriter(InProcessTransport):
        def transmit(self, apdu: bytes) -> bytes:
            if apdu[1] == 0xC0:
                apdu = bytes([get_response_cla | (apdu[0] & 0x03)]) + apdu[1:]
            sent.append(apdu)
            return super().transmit(apdu)

    transport = TracingTransport(ClaRewriter(card))
    assert transceive(transport, bytes.fromhex("0070000001")).data == b"\x01"
    select = transceive(transport, bytes.fromhex("01A4040410") + ISD_R_AID)
    assert (select.sw, select.data) == (0x9000, FCI)
    eid = transceive(transport, bytes.fromhex("81E2910006") + GET_EID)
    assert (eid.sw, eid.data) == (0x9000, EID_RESPONSE)
    assert sent[-1] == bytes([get_response_cla | 1, 0xC0, 0, 0, len(EID_RESPONSE)])
    assert [x.sw for x in transport.exchanges] == [0x9000, 0x6100 | len(FCI), 0x9000, 0x6115, 0x9000]
    assert transport.exchanges[-1].data == EID_RESPONSE
    transport.close()
    assert not card.powered


def test_tracing_records_transport_errors():
    from sgp32hil.drivers.apdu.base import TransportError

    transport = TracingTransport(InProcessTransport(EchoCard()))
    transport.close()
    with pytest.raises(TransportError):
        transport.transmit(b"\x00\xA4\x04\x00")
    assert transport.exchanges[0].response is None and "closed" in transport.exchanges[0].error


def test_echo_card():
    card = EchoCard()
    assert card.process_apdu(bytes.fromhex(SELECT_ISDR)) == b"\x90\x00"
    assert card.process_apdu(bytes.fromhex("8012000003AABBCC00")) == bytes.fromhex("AABBCC9000")
    assert card.process_apdu(b"\x00") == b"\x67\x00"


_PLAUSIBLE_SW1 = {0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6C, 0x6D, 0x6E, 0x6F, 0x90}


def _random_apdus():
    header = st.tuples(
        st.sampled_from([0x00, 0x01, 0x03, 0x04, 0x10, 0x40, 0x4F, 0x60, 0x80, 0x81, 0x84, 0xA0, 0xC0, 0xC5, 0xFF])
        | st.integers(0, 255),
        st.sampled_from([0x70, 0xA4, 0xC0, 0xAA, 0xE2, 0xF2]) | st.integers(0, 255),
        st.sampled_from([0x00, 0x04, 0x11, 0x80, 0x90, 0x91]) | st.integers(0, 255),
        st.integers(0, 255),
    ).map(bytes)
    tail = st.one_of(
        st.binary(max_size=3),
        st.binary(max_size=40).map(lambda d: bytes([len(d)]) + d),
        st.tuples(st.binary(min_size=1, max_size=40), st.integers(0, 255)).map(
            lambda t: bytes([len(t[0])]) + t[0] + bytes([t[1]])),
        st.binary(max_size=300),
    )
    return st.lists(st.tuples(header, tail).map(lambda t: t[0] + t[1]) | st.binary(max_size=8), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(_random_apdus())
def test_random_apdus_never_raise_and_always_return_a_status_word(apdus):
    class Backend:
        def handle(self, channel, command):
            if len(command) % 3 == 0:
                raise CardStatus(0x6A88)
            if len(command) % 3 == 1:
                raise KeyError(command)
            return command * 2

    card = EuiccCard(Backend())
    card.power_on()
    prefix = [bytes.fromhex("0070000001"), bytes.fromhex(SELECT_ISDR), bytes.fromhex("01A4040410") + ISD_R_AID]
    for apdu in prefix + apdus:
        rapdu = card.process_apdu(apdu)
        assert len(rapdu) >= 2
        assert rapdu[-2] in _PLAUSIBLE_SW1, rapdu.hex()
        if rapdu[-2] != 0x90:
            assert len(rapdu) == 2 or rapdu[-2] == 0x61, rapdu.hex()
