"""The software eUICC through pcscd + vpcd, as an LPA / IPAd sees it (pyscard, T=0), and the CLI service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from sgp32hil.drivers.virtual.euicc.card import ISD_R_AID
from sgp32hil.drivers.virtual.euicc.factory import decode_iccid
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc
from sgp32hil.harness import asn1, pki

from ..conftest import VPCD_READERS, card_present, wait_until

pcsc = pytest.mark.pcsc


def connect(reader_name: str):
    reader = next(r for r in readers() if str(r) == reader_name)
    connection = reader.createConnection()
    connection.connect(CardConnection.T0_protocol)
    return connection


def send(connection, apdu: bytes) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


def lpa_open_isdr(connection) -> int:
    """TERMINAL CAPABILITY, MANAGE CHANNEL open, SELECT ISD-R (61xx + GET RESPONSE), as LPAs do."""
    assert send(connection, bytes.fromhex("80AA000005A903830107")) == (b"", 0x9000)
    data, sw = send(connection, bytes.fromhex("0070000001"))
    assert sw == 0x9000 and len(data) == 1
    channel = data[0]
    data, sw = send(connection, bytes([channel, 0xA4, 0x04, 0x04, len(ISD_R_AID)]) + ISD_R_AID)
    assert data == b"" and sw >> 8 == 0x61
    fci, sw2 = send(connection, bytes([channel, 0xC0, 0, 0, sw & 0xFF]))
    assert sw2 == 0x9000 and fci[0] == 0x6F
    return channel


def lpa_es10(connection, channel: int, command: bytes) -> bytes:
    """STORE DATA in blocks of 255 bytes, then GET RESPONSE until all response data is read."""
    blocks = [command[i:i + 255] for i in range(0, len(command), 255)]
    for n, block in enumerate(blocks):
        last = n == len(blocks) - 1
        data, sw = send(connection, bytes([0x80 | channel, 0xE2, 0x91 if last else 0x11, n, len(block)]) + block)
        if not last:
            assert sw == 0x9000
    out = data
    while sw >> 8 == 0x61:
        chunk, sw = send(connection, bytes([channel, 0xC0, 0, 0, sw & 0xFF]))
        out += chunk
    assert sw == 0x9000, f"{command[:4].hex()} -> {sw:04X}"
    return out


@pytest.fixture(scope="module")
def pkiset():
    return pki.generate()


@pcsc
def test_lpa_reads_eid_profiles_and_info(vpcd_card, tmp_path, pkiset):
    euicc = SoftEuicc.open(tmp_path / "state", pkiset)
    try:
        _bridge, reader = vpcd_card(euicc.card, 35963)
        connection = connect(reader)
        try:
            channel = lpa_open_isdr(connection)
            assert channel == 1
            eid = lpa_es10(connection, channel, bytes.fromhex("BF3E035C015A"))
            assert eid == bytes.fromhex("BF3E125A10") + bytes.fromhex(euicc.eid)
            _, profiles = asn1.decode("SGP32-ProfileInfoListResponse", lpa_es10(connection, channel, b"\xBF\x2D\x00"))
            assert [(decode_iccid(p["iccid"]), p["profileState"]) for p in profiles] == \
                [(euicc.state.profiles[0].iccid, 1)]
            info2 = asn1.decode("SGP32-EUICCInfo2", lpa_es10(connection, channel, bytes.fromhex("BF2200")))
            assert info2["ipaMode"] == 0
            certs = lpa_es10(connection, channel, bytes.fromhex("BF5600"))
            assert len(certs) > 256
            asn1.decode("GetCertsResponse", certs)
            eims = asn1.decode("GetEimConfigurationDataResponse", lpa_es10(connection, channel, bytes.fromhex("BF5500")))
            assert eims["eimConfigurationDataList"][0]["eimFqdn"] == "127.0.0.1:8444"
            assert send(connection, bytes.fromhex("0070800100")) == (b"", 0x9000)
        finally:
            connection.disconnect()
    finally:
        euicc.close()


def cli(*args: str) -> list[str]:
    """The installed ``sgp32-hil`` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("sgp32-hil")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "sgp32hil.harness.cli", *args]


def start_service(state: Path, pki_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        cli("virtual", "euicc", "--state", str(state), "--vpcd-port", "35964", "--pki", str(pki_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"service exited with {proc.returncode}: {proc.stderr.read()}")
    return proc, line


def stop_service(proc: subprocess.Popen) -> int:
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def read_eid(reader: str) -> str:
    connection = connect(reader)
    try:
        channel = lpa_open_isdr(connection)
        data = lpa_es10(connection, channel, bytes.fromhex("BF3E035C015A"))
        send(connection, bytes([0x00, 0x70, 0x80, channel, 0x00]))
        return data[5:].hex().upper()
    finally:
        connection.disconnect()


@pcsc
def test_cli_service_restart_keeps_eid(pcscd, tmp_path):
    reader = VPCD_READERS[35964]
    pki_dir = tmp_path / "pki"
    pki.generate(pki_dir)
    state = tmp_path / "state"
    proc, line = start_service(state, pki_dir)
    try:
        wait_until(lambda: card_present(reader), 15.0, f"the software eUICC in {reader!r}")
        eid = read_eid(reader)
        assert pki.eid_is_valid(eid)
        assert eid in line and "35964" in line and str(state) in line
    finally:
        code = stop_service(proc)
    assert code == 0
    wait_until(lambda: not card_present(reader), 10.0, f"{reader!r} to see the card removed")
    proc, line = start_service(state, pki_dir)
    try:
        assert "existing state" in line
        wait_until(lambda: card_present(reader), 15.0, f"the software eUICC in {reader!r} again")
        assert read_eid(reader) == eid
    finally:
        assert stop_service(proc) == 0
    wait_until(lambda: not card_present(reader), 10.0, f"{reader!r} to see the card removed")
