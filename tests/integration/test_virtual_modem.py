"""The simulated modem on a pty, driven by the real AT driver and the ES10 client (27.007, SGP.22/SGP.32 ES10).

Parametrised over vendor personalities: attach on the bootstrap profile's network, the eUICC over +CGLA
and +CSIM, EnableProfile with the REFRESH sequence and re-registration, coverage loss, a re-created port,
malformed input, and transcript replay.
"""

from __future__ import annotations

import os
import re
import time

import pytest
import serial

from sgp32hil.drivers.apdu.base import ChannelTransport, TransportError
from sgp32hil.drivers.apdu.modem import CglaTransport, CsimTransport, ModemApduTransport
from sgp32hil.drivers.at import AtChannel, AtError, CmeError, Modem, Transcript, load_profile
from sgp32hil.drivers.at.replay import MASK_CGLA_DATA, ReplayDivergence, ReplaySerial
from sgp32hil.drivers.virtual.euicc.factory import BootstrapSpec, make_iccid
from sgp32hil.drivers.virtual.modem.control import ControlClient, ControlError
from sgp32hil.drivers.virtual.modem.machine import Timing
from sgp32hil.drivers.virtual.modem.network import load_networks
from sgp32hil.drivers.virtual.modem.service import DEFAULT_NETWORKS, open_soft_euicc_modem, with_apdu_quirks
from sgp32hil.harness import pki

VENDORS = ["quectel-bg95", "nordic-nrf91", "simcom-sim7080", "strict-27007"]
OP_ICCID = make_iccid("890010200000000001")
BOOT_ICCID = BootstrapSpec().iccid
FAST = Timing(sim_init_s=0.1, boot_urc_s=0.02, refresh_s=0.02, reenumerate_gap_s=0.2)
EID_RE = re.compile(r"^[0-9]{32}$")


@pytest.fixture(scope="module")
def pkiset():
    return pki.generate()


@pytest.fixture
def provision(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text(f'profiles:\n  - {{iccid: "{OP_ICCID}", imsi: "001020000000001", apn: internet, name: Op}}\n')
    return path


@pytest.fixture
def sim(tmp_path, pkiset, provision, request):
    """Factory: a started simulated modem with a software eUICC; stopped (threads joined) at teardown."""
    started = []

    def make(vendor: str, networks=DEFAULT_NETWORKS, quirks=None, **kwargs):
        profile = with_apdu_quirks(load_profile(vendor), **(quirks or {}))
        modem, euicc = open_soft_euicc_modem(tmp_path / f"state-{len(started)}", pkiset, profile, networks,
                                             tmp_path / "modem0", provision=provision, timing=FAST, **kwargs)
        modem.start()
        started.append((modem, euicc))
        return modem, euicc

    yield make
    for modem, euicc in started:
        modem.stop()
        euicc.close()


def connect(modem, vendor: str, transcript: Transcript | None = None) -> Modem:
    driver = Modem.open(modem.link, vendor, transcript=transcript)
    if driver.cfun() != 1:
        driver.set_cfun(1)
    driver.wait_sim_ready(5)
    return driver


@pytest.mark.parametrize("vendor", VENDORS)
def test_attach_on_bootstrap_network(sim, vendor):
    modem, _ = sim(vendor)
    with connect(modem, vendor) as m:
        reg = m.wait_registered(timeout=5)
        assert (reg.stat, reg.act) == (1, 7)
        assert m.operator().operator == "00101"
        assert m.iccid() == BOOT_ICCID
        assert m.at("AT+CIMI").lines == ("001010000000001",)
        assert m.pdp_address(1) == ("10.45.0.2",)
        assert m.attached()
        assert m.signal().csq.rssi == 22


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("path", ["cgla", "csim"])
def test_es10_over_modem(sim, vendor, path):
    modem, euicc = sim(vendor)
    with connect(modem, vendor) as m:
        transport = ModemApduTransport(m, path=path)
        assert isinstance(transport, CglaTransport if path == "cgla" else CsimTransport)
        assert isinstance(transport, ChannelTransport) == (path == "cgla")
        try:
            with transport.client() as client:
                assert client.get_eid() == euicc.eid
                assert len(client.get_euicc_challenge()) == 16
        finally:
            transport.close()
        assert modem.status()["sessions"] == {}
        assert euicc.card.open_channels == [] or euicc.card.open_channels == [0]


@pytest.mark.parametrize("vendor", VENDORS)
def test_enable_profile_refresh_and_reregistration(sim, vendor):
    modem, _ = sim(vendor)
    profile = load_profile(vendor)
    with connect(modem, vendor) as m:
        m.wait_registered(timeout=5)
        mark = m.channel.urc_mark()
        transport = ModemApduTransport(m)
        with transport.client() as client:
            client.enable_profile(OP_ICCID)
        transport.close()
        reg = m.wait_registered(lambda r: r.registered and r.act == 9, timeout=10)
        assert reg.stat == 5 or reg.stat == 1
        assert m.operator().operator == "00102"
        assert m.iccid() == OP_ICCID
        assert m.at("AT+CIMI").lines == ("001020000000001",)
        urcs = [e.line for e in m.channel.urc_history(mark)]
        expected = [line for line in profile.sim_ready.refresh_sequence if not line.startswith("+CEREG")]
        seen = [u for u in urcs if u in expected]
        assert seen == expected, urcs
        if profile.registration.max_n >= 2:
            assert any(u.startswith("+CEREG: 2") for u in urcs)
        assert modem.status()["refresh_count"] == 1


def test_channels_invalidated_by_refresh(sim):
    modem, _ = sim("quectel-bg95")
    with connect(modem, "quectel-bg95") as m:
        sid = m.open_logical_channel(bytes.fromhex("A0000005591010FFFFFFFF8900000100"))
        modem.refresh()
        m.wait_sim_ready(5)
        with pytest.raises(CmeError) as exc:
            m.transmit_logical(sid, bytes.fromhex("81E2910006BF3E035C015A"))
        assert exc.value.code == 21


@pytest.mark.parametrize("vendor", ["quectel-bg95", "nordic-nrf91"])
def test_coverage_loss_and_reject(sim, vendor):
    modem, _ = sim(vendor)
    with connect(modem, vendor) as m:
        m.wait_registered(timeout=5)
        mark = m.channel.urc_mark()
        modem.set_coverage("bootstrap", False)
        m.channel.wait_urc(re.compile(r"^\+CEREG: 2\b"), 5, since=mark)
        reg = m.wait_registered(lambda r: r.stat == 3, timeout=5)
        assert (reg.stat, reg.reject_cause, reg.act) == (3, 15, 9)
        modem.set_coverage("operational", False)
        reg = m.wait_registered(lambda r: r.stat in (0, 2, 4), timeout=5)
        assert reg.stat in (0, 2, 4)
        assert m.signal().csq.rssi == 99
        modem.move("bootstrap")
        assert m.wait_registered(timeout=5).act == 7


def test_broken_operational_network(sim, tmp_path):
    networks = load_networks(DEFAULT_NETWORKS.parent / "broken-operational.yaml")
    modem, _ = sim("quectel-bg95", networks=networks)
    with connect(modem, "quectel-bg95") as m:
        m.wait_registered(timeout=5)
        transport = ModemApduTransport(m)
        with transport.client() as client:
            client.enable_profile(OP_ICCID)
        transport.close()
        reg = m.wait_registered(lambda r: r.stat == 3 and r.act == 9, timeout=10)
        assert reg.reject_cause == 15
        m.at("AT+CEREG=5")
        line = m.at("AT+CEREG?").lines[0]
        assert line == '+CEREG: 5,3,"1A2B","00C0FFEE",9,0,15'


def test_survives_recreated_port(sim):
    modem, euicc = sim("quectel-bg95")
    with connect(modem, "quectel-bg95") as m:
        old = os.path.realpath(modem.link)
        modem.reenumerate()
        assert m.channel.wait_gone(5)
        m.channel.reopen(5)
        m.init()
        assert m.wait_registered(timeout=5).stat == 1
        transport = ModemApduTransport(m)
        with transport.client() as client:
            assert client.get_eid() == euicc.eid
        transport.close()
        assert modem.status()["port_generation"] == 2
        assert old  # the link now points at a new pty
        m.reset()  # quectel: AT+CFUN=1,1 re-enumerates
        assert m.wait_registered(timeout=5).stat == 1


def test_refresh_reenumerates(sim):
    modem, _ = sim("quectel-bg95", refresh_reenumerates=True)
    with connect(modem, "quectel-bg95") as m:
        m.wait_registered(timeout=5)
        transport = ModemApduTransport(m)
        with transport.client() as client:
            client.enable_profile(OP_ICCID)
        transport.close()
        assert m.channel.wait_gone(5)
        m.channel.reopen(5)
        m.init()
        assert m.wait_registered(lambda r: r.registered and r.act == 9, timeout=10)
        assert m.iccid() == OP_ICCID


@pytest.fixture
def raw_port(sim):
    modem, _ = sim("quectel-bg95")
    port = serial.Serial(modem.link, timeout=0.05)

    def ask(data: bytes, wait: float = 0.3) -> bytes:
        port.write(data)
        deadline = time.monotonic() + wait
        out = b""
        while time.monotonic() < deadline:
            out += port.read(4096)
            if re.search(rb"(OK|ERROR[^\r]*)\r\n$", out):
                break
        return out

    time.sleep(0.2)
    port.reset_input_buffer()
    yield ask, modem
    port.close()


def test_malformed_input(raw_port):
    ask, modem = raw_port
    assert ask(b"AT\r") == b"AT\r\r\nOK\r\n"
    assert ask(b"ATE0\r").endswith(b"OK\r\n")
    assert ask(b"AT+BOGUS\r") == b"\r\nERROR\r\n"
    assert ask(b"AT+CMEE=1\r") == b"\r\nOK\r\n"
    assert ask(b"AT+BOGUS\r") == b"\r\n+CME ERROR: 4\r\n"
    assert ask(b"AT+CMEE=2\r") == b"\r\nOK\r\n"
    sid = re.search(rb"\+CCHO: (\d+)", ask(b'AT+CCHO="A0000005591010FFFFFFFF8900000100"\r')).group(1).decode()
    bad = [f'AT+CGLA={sid},4,"XYZW"', f'AT+CGLA={sid},3,"ABC"', f'AT+CGLA={sid},6,"81E291"',
           f'AT+CGLA={sid},22,81E2910006BF3E035C015A,7', 'AT+CSIM=4,"GG00"', 'AT+CSIM=6,"0070000001"']
    for cmd in bad:
        assert ask(cmd.encode() + b"\r") == b"\r\n+CME ERROR: incorrect parameters\r\n", cmd
    assert ask(b"AT+CGLA=99,22,\"81E2910006BF3E035C015A\"\r") == b"\r\n+CME ERROR: invalid index\r\n"
    assert ask(b"\xff\x00\x9bAT\r") == b"\r\nOK\r\n"
    assert ask(b"garbage without prefix\r", wait=0.2) == b""
    assert ask(b"AT" + b"A" * 5000 + b"\r") == b"\r\nERROR\r\n"
    assert ask(b"AT+CGMI;+CGMM\r") == b"\r\nQuectel\r\n\r\nBG96\r\n\r\nOK\r\n"
    assert ask(f"AT+CCHC={sid}\r".encode()) == b"\r\nOK\r\n"
    assert modem.status()["sessions"] == {}


def test_vendor_deviations(sim):
    modem, euicc = sim("strict-27007", quirks={"session_id": "bare", "test_command": False})
    with connect(modem, "strict-27007") as m:
        with pytest.raises(CmeError):
            m.at("AT+CCHO=?")
        m.use_profile(with_apdu_quirks(m.profile, session_id="bare", test_command=False))
        resp = m.at('AT+CCHO="A0000005591010FFFFFFFF8900000100"', bare_ok=True)
        assert re.fullmatch(r"\d+", resp.lines[0])
        m.at(f"AT+CCHC={resp.lines[0]}")
        transport = ModemApduTransport(m)
        with transport.client() as client:
            assert client.get_eid() == euicc.eid


def test_simcom_cgla_returns_61xx(sim):
    modem, _ = sim("simcom-sim7080")
    with connect(modem, "simcom-sim7080") as m:
        sid = m.open_logical_channel(bytes.fromhex("A0000005591010FFFFFFFF8900000100"))
        resp = m.at(f'AT+CGLA={sid.raw},22,"81E2910006BF3E035C015A"')
        assert re.fullmatch(r'\+CGLA:\d+,"61[0-9A-F]{2}"', resp.lines[0])
        m.close_logical_channel(sid)


def test_faults_hang_leak_and_channel_cap(sim):
    modem, euicc = sim("quectel-bg95")
    with connect(modem, "quectel-bg95") as m:
        m.channel.timeouts = m.channel.timeouts.merged({"+CGLA": 0.5})
        transport = ModemApduTransport(m, path="cgla")
        modem.fault("hang_cgla", count=1)
        client = transport.client()
        with pytest.raises(TransportError):
            with client:
                client.get_eid()
        assert transport.leaked
        with transport.client() as c:
            assert c.get_eid() == euicc.eid
        assert not transport.leaked
        modem.fault("channel_cap", channels=1)
        held = m.open_logical_channel(bytes.fromhex("A0000005591010FFFFFFFF8900000100"))
        with transport.client() as c:  # CME on +CCHO: close 1..4, retry once
            assert c.get_eid() == euicc.eid
        transport.close()
        with pytest.raises(CmeError):
            m.transmit_logical(held, bytes.fromhex("81E2910006BF3E035C015A"))
        modem.fault("slow_ok", seconds=0.3, count=1)
        t0 = time.monotonic()
        m.at("AT")
        assert time.monotonic() - t0 >= 0.3
        modem.fault("urc_in_response", line="+CEREG: 4")
        assert m.at("AT+CGMI").lines == ("Quectel",)


def test_control_socket(sim, tmp_path):
    sock = str(tmp_path / "ctl.sock")
    modem, _ = sim("nordic-nrf91", control=sock)
    with connect(modem, "nordic-nrf91") as m, ControlClient(sock) as ctl:
        m.wait_registered(timeout=5)
        assert ctl.call("status")["network"] == "bootstrap"
        ctl.call("move", network="operational")
        assert m.wait_registered(lambda r: r.stat == 3, timeout=5).reject_cause == 15
        ctl.call("set_coverage", network="bootstrap", on=True)
        assert m.wait_registered(timeout=5).act == 7
        mark = m.channel.urc_mark()
        ctl.call("inject_urc", line="%XSIM: 1")
        m.wait_for_urc("%XSIM: 1", 2, since=mark)
        ctl.call("fault", name="urc_storm", line="%MDMEV: PRACH CE-LEVEL 0", count=200, interval_s=0.0)
        assert m.at("AT+CGMI").lines == ("Nordic Semiconductor ASA",)
        with pytest.raises(ControlError):
            ctl.call("nonsense")


def test_replay_strict_and_lenient(sim, tmp_path):
    modem, euicc = sim("quectel-bg95")
    record = tmp_path / "session.jsonl"
    transcript = Transcript(record)
    with connect(modem, "quectel-bg95", transcript) as m:
        m.wait_registered(timeout=5)
        transport = ModemApduTransport(m)
        with transport.client() as c:
            eid = c.get_eid()
        transport.close()
    transcript.close()

    def replay(strict: bool, masks=()):
        port = ReplaySerial(record, strict=strict, masks=masks)
        channel = AtChannel("loop://", serial_factory=ReplaySerial.factory(port)).open()
        return port, Modem(channel, load_profile("quectel-bg95"))

    port, m = replay(True)
    with m:
        m.init()
        m.cfun()
        m.wait_sim_ready(2)
        m.wait_registered(timeout=2)
        transport = ModemApduTransport(m)
        with transport.client() as c:
            assert c.get_eid() == eid
        transport.close()
    assert port.finished, port.remaining()[:3]

    port, m = replay(True)
    with m, pytest.raises(ReplayDivergence) as exc:
        m.at("AT+CGMR")
    assert exc.value.expected == "AT" and exc.value.got == "AT+CGMR" and exc.value.index is not None

    port, m = replay(False, masks=[MASK_CGLA_DATA])
    with m:
        with pytest.raises(AtError):
            m.at("AT+CGMR", timeout=0.5)
        m.init()
        assert port.divergences and port.divergences[0].got == "AT+CGMR"
