"""The software eUICC through the real PC/SC path: pyscard -> pcscd -> vpcd -> VpcdBridge -> EuiccCard."""

from __future__ import annotations

import socket
import time

import pytest
from smartcard.ATR import ATR
from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from sgp32hil.drivers.apdu.base import TransportError, transceive
from sgp32hil.drivers.apdu.pcsc import PcscTransport, list_readers
from sgp32hil.drivers.virtual.echo import EchoCard
from sgp32hil.drivers.virtual.euicc.card import DEFAULT_ATR, ISD_R_AID, EuiccCard, isd_r_fci
from sgp32hil.drivers.virtual.vpcd import VpcdBridge

from ..conftest import card_present, wait_until

pcsc = pytest.mark.pcsc

READER = "Virtual PCD 00 00"
FCI = isd_r_fci()


class EchoBackend:
    def __init__(self) -> None:
        self.commands: list[tuple[int, bytes]] = []

    def handle(self, channel: int, command: bytes) -> bytes:
        self.commands.append((channel, command))
        return command


@pytest.fixture
def backend() -> EchoBackend:
    return EchoBackend()


@pytest.fixture
def euicc(vpcd_card, backend):
    card = EuiccCard(backend)
    bridge, reader = vpcd_card(card, 35963)
    return card, bridge, reader


@pcsc
def test_reader_listed_with_card_and_atr(euicc):
    card, _bridge, reader = euicc
    infos = {r.name: r for r in list_readers()}
    assert reader == READER
    assert infos[READER].card_present
    assert infos[READER].atr == card.atr.hex().upper()
    assert READER in [str(r) for r in readers()]


@pcsc
def test_plain_pyscard_connects_with_t0_only(euicc):
    reader = next(r for r in readers() if str(r) == READER)
    connection = reader.createConnection()
    connection.connect(CardConnection.T0_protocol)
    try:
        assert ATR(connection.getATR()).isT0Supported()
        data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00A4040410") + ISD_R_AID))
        assert (data, sw1) == ([], 0x61)
        data, sw1, sw2 = connection.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
        assert bytes(data) == FCI and (sw1, sw2) == (0x90, 0x00)
    finally:
        connection.disconnect()


@pcsc
def test_select_get_response_and_manage_channel(euicc):
    with PcscTransport(READER) as transport:
        assert transport.protocol == "T=0"
        assert transport.transmit(bytes.fromhex("80AA000005A903830107")) == b"\x90\x00"
        rapdu = transport.transmit(bytes.fromhex("00A4040010") + ISD_R_AID)
        assert rapdu == bytes([0x61, len(FCI)])
        assert transport.transmit(bytes([0x80, 0xC0, 0, 0, len(FCI)])) == FCI + b"\x90\x00"
        assert transport.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
        assert transport.transmit(bytes.fromhex("0070000200")) == b"\x90\x00"
        response = transceive(transport, bytes.fromhex("02A4040410") + ISD_R_AID)
        assert (response.sw, response.data) == (0x9000, FCI)
        assert transport.transmit(bytes.fromhex("0070800200")) == b"\x90\x00"
        assert transport.transmit(bytes.fromhex("0070800100")) == b"\x90\x00"
        assert transport.transmit(bytes.fromhex("02A4040410") + ISD_R_AID) == b"\x68\x81"


@pcsc
def test_store_data_chaining_of_600_bytes(euicc, backend):
    command = bytes.fromhex("BF3782025B") + bytes(i & 0xFF for i in range(595))
    with PcscTransport("Virtual PCD 00 00") as transport:
        assert transport.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
        assert transceive(transport, bytes.fromhex("01A4040410") + ISD_R_AID).sw == 0x9000
        blocks = [command[i:i + 255] for i in range(0, len(command), 255)]
        for n, block in enumerate(blocks[:-1]):
            assert transport.transmit(bytes([0x81, 0xE2, 0x11, n, len(block)]) + block) == b"\x90\x00"
        last = bytes([0x81, 0xE2, 0x91, len(blocks) - 1, len(blocks[-1])]) + blocks[-1]
        response = transceive(transport, last)
    assert (response.sw, response.data) == (0x9000, command)
    assert backend.commands == [(1, command)]


@pcsc
def test_card_removal_and_reinsertion_seen_by_pyscard(euicc):
    _card, bridge, reader = euicc
    transport = PcscTransport(reader)
    try:
        bridge.stop()
        wait_until(lambda: not card_present(reader), 10.0, "the card to be seen removed")
        with pytest.raises(TransportError):
            transport.transmit(bytes.fromhex("00A4040410") + ISD_R_AID)
        with pytest.raises(TransportError, match="no card"):
            PcscTransport(reader)
        bridge.start()
        wait_until(lambda: card_present(reader), 10.0, "the card to be seen inserted again")
    finally:
        transport.close()
    with PcscTransport(reader) as again:
        assert transceive(again, bytes.fromhex("00A4040410") + ISD_R_AID).data == FCI


@pcsc
def test_second_reader_and_reader_lookup(vpcd_card):
    _bridge, reader = vpcd_card(EchoCard(), 35964)
    assert reader == "Virtual PCD 00 01"
    for selector in ("Virtual PCD 00 01", "pcd 00 01"):
        with PcscTransport(selector) as transport:
            assert transport.reader == reader
            assert transport.transmit(bytes.fromhex("8012000002ABCD00")) == bytes.fromhex("ABCD9000")
    index = [r.name for r in list_readers()].index(reader)
    with PcscTransport(index) as transport:
        assert transport.reader == reader


@pcsc
def test_missing_reader_lists_the_readers(pcscd):
    with pytest.raises(TransportError, match="Virtual PCD 00 00"):
        PcscTransport("no such reader")
    with pytest.raises(TransportError, match="ambiguous"):
        PcscTransport("Virtual PCD")
    with pytest.raises(TransportError, match="index 99"):
        PcscTransport(99)


@pcsc
def test_warm_reset_closes_logical_channels(euicc):
    card, _bridge, reader = euicc
    with PcscTransport(reader) as transport:
        assert transport.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
        assert transport.reset() == card.atr
        assert card.open_channels == [0]
        assert transport.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"


class FakeVpcd:
    """The reader side of the vpcd protocol on a free local port, to drive a VpcdBridge without pcscd."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(1)
        self.server.settimeout(10)
        self.port = self.server.getsockname()[1]
        self.conn = None

    def accept(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)

    def send(self, payload: bytes) -> None:
        self.conn.sendall(len(payload).to_bytes(2, "big") + payload)

    def exchange(self, payload: bytes) -> bytes:
        self.send(payload)
        length = int.from_bytes(self._recv(2), "big")
        return self._recv(length)

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            assert chunk, "bridge closed the connection"
            buf += chunk
        return buf

    def drop(self) -> None:
        self.conn.close()

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.server.close()


class _CrashingCard(EchoCard):
    def process_apdu(self, capdu: bytes) -> bytes:
        if capdu[1] == 0x99:
            raise RuntimeError("card bug")
        if capdu[1] == 0x98:
            return b""
        return super().process_apdu(capdu)


def test_bridge_protocol_against_fake_vpcd():
    """Framing, control bytes, 6F00 for a failing card, reconnect before vpcd listens and after a drop."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bridge = VpcdBridge(_CrashingCard(), port=port, max_backoff=0.1).start()
    vpcd = None
    try:
        time.sleep(0.3)
        assert not bridge.connected.is_set()
        vpcd = FakeVpcd(port)
        vpcd.accept()
        assert bridge.wait_connected(5)
        assert vpcd.exchange(b"\x04") == DEFAULT_ATR
        vpcd.send(b"\x00")
        vpcd.send(b"\x01")
        vpcd.send(b"\x02")
        deadline = time.monotonic() + 5  # control bytes get no reply: wait for the bridge to act on them
        while not bridge.card.powered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.card.powered
        assert vpcd.exchange(bytes.fromhex("8012000002ABCD")) == bytes.fromhex("ABCD9000")
        assert vpcd.exchange(bytes.fromhex("00990000")) == b"\x6f\x00"
        assert vpcd.exchange(bytes.fromhex("00980000")) == b"\x6f\x00"
        vpcd.drop()
        vpcd.accept()
        assert vpcd.exchange(bytes.fromhex("8012000001EE")) == bytes.fromhex("EE9000")
        bridge.stop()
        assert not bridge.connected.is_set()
        vpcd.conn.settimeout(2)
        assert vpcd.conn.recv(1) == b""
    finally:
        bridge.stop()
        if vpcd is not None:
            vpcd.close()
