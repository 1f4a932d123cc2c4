"""Network model (TS 24.301 attach outcomes, EMM causes) and the modem state machine on a manual clock."""

from __future__ import annotations

import pytest

from sgp32hil.drivers.at import load_profile
from sgp32hil.drivers.virtual.modem.backend import Subscriber, UiccBackend, UiccError, with_channel
from sgp32hil.drivers.virtual.modem.machine import (
    ModemMachine,
    Scheduler,
    Timing,
    Uicc,
    literal_urc,
    split_refresh_sequence,
)
from sgp32hil.drivers.virtual.modem.network import NetworkModelError, load_networks, model_from_mapping
from sgp32hil.drivers.virtual.modem.service import DEFAULT_NETWORKS

BROKEN = DEFAULT_NETWORKS.parent / "broken-operational.yaml"


def model():
    return load_networks(DEFAULT_NETWORKS)


def test_default_model():
    m = model()
    assert [n.name for n in m.networks] == ["bootstrap", "operational"]
    assert m.subscriber("8900101000000000019").imsi == "001010000000001"
    boot = m.attach("001010000000001")
    assert (boot.network.name, boot.stat, boot.reject_cause) == ("bootstrap", 1, None)
    op = m.attach("001020000000001")
    assert (op.network.name, op.stat) == ("operational", 1)
    stranger = m.attach("999990000000001")
    assert (stranger.stat, stranger.reject_cause) == (3, 15)
    assert m.attach("001020000000001", plmn="00101").stat == 3
    assert m.attach(None).reject_cause == 3
    m.network("bootstrap").coverage = False
    m.network("operational").coverage = False
    assert m.attach("001010000000001").stat == 2


def test_broken_model_forces_reject():
    m = load_networks(BROKEN)
    out = m.attach("001020000000001")
    assert (out.network.name, out.stat, out.reject_cause) == ("operational", 3, 15)


def test_roaming_and_ranges():
    m = model_from_mapping({"networks": [{"name": "visited", "plmn": "00199", "act": 9,
                                          "accept": [{"from": "001010000000000", "to": "001010000000009"}]}]})
    assert m.attach("001010000000005").stat == 5
    assert m.attach("001010000000010").stat == 3


def test_addresses_are_stable_per_imsi():
    m = model()
    net = m.network("bootstrap")
    a = m.address(net, "sgp32hil", "001010000000001")
    assert a == "10.45.0.2" == m.address(net, "sgp32hil", "001010000000001")
    assert m.address(net, "sgp32hil", "001010000000002") == "10.45.0.3"
    assert m.address(net, "other", "001010000000001") == "10.45.1.2"


@pytest.mark.parametrize("bad, key", [
    ({"networks": []}, "networks"),
    ({"networks": [{"name": "x", "plmn": "1", "act": 7}]}, "plmn"),
    ({"networks": [{"name": "x", "plmn": "00101", "act": 3}]}, "act"),
    ({"networks": [{"name": "x", "plmn": "00101", "act": 7, "accept": ["abc"]}]}, "accept[0]"),
    ({"networks": [{"name": "x", "plmn": "00101", "act": 7, "apns": {"a": "nonsense"}}]}, "apns.a"),
    ({"networks": [{"name": "x", "plmn": "00101", "act": 7, "colour": 1}]}, "colour"),
    ({"networks": [{"name": "x", "plmn": "00101", "act": 7}], "profiles": [{"iccid": "1", "imsi": "1"}]}, "iccid"),
])
def test_model_errors_name_the_key(bad, key):
    with pytest.raises(NetworkModelError, match=key.replace("[", r"\[").replace("]", r"\]")):
        model_from_mapping(bad, "test.yaml")


def test_refresh_sequence_split_and_literals():
    assert split_refresh_sequence(load_profile("quectel-bg95")) == (
        ["+CPIN: NOT READY"], ["+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE"])
    assert split_refresh_sequence(load_profile("nordic-nrf91")) == (["%XSIM: 0"], ["%XSIM: 1"])
    assert literal_urc(r"^\+KSUP: ?0$") == "+KSUP: 0"
    assert literal_urc(r"^\*ATREADY: 1$") == "*ATREADY: 1"


class TinyCard:
    """A card with MANAGE CHANNEL, SELECT (61xx) and GET RESPONSE; enough for the MT's channel logic."""

    atr = bytes.fromhex("3B9F96803FC7A08031E073FE211B630801000000000000000F")

    def __init__(self):
        self.channels = {0}
        self.resets = 0
        self.pending = b""

    def power_on(self):
        self.channels = {0}

    def power_off(self):
        self.channels = {0}

    def reset(self):
        self.resets += 1
        self.channels = {0}

    def process_apdu(self, c: bytes) -> bytes:
        ch = c[0] & 0x03
        if c[1] == 0x70 and c[2] == 0x00:
            free = next((n for n in (1, 2, 3) if n not in self.channels), None)
            if free is None:
                return b"\x6a\x81"
            self.channels.add(free)
            return bytes([free]) + b"\x90\x00"
        if c[1] == 0x70 and c[2] == 0x80:
            self.channels.discard(c[3])
            return b"\x90\x00"
        if ch not in self.channels:
            return b"\x68\x81"
        if c[1] == 0xA4:
            self.pending = b"\x6f\x03\x84\x01\x00"
            return b"\x61\x05"
        if c[1] == 0xC0:
            out, self.pending = self.pending, b""
            return out + b"\x90\x00"
        return bytes([ch]) + b"\x90\x00"


class FixedSource:
    def __init__(self, sub):
        self.sub = sub

    def current(self):
        return self.sub


@pytest.fixture
def machine():
    urcs: list[str] = []
    sched = Scheduler(manual=True)
    backend = UiccBackend(TinyCard())
    source = FixedSource(Subscriber("8900101000000000019", "001010000000001", "sgp32hil"))
    m = ModemMachine(load_profile("quectel-bg95"), model(), backend, source, sched, urcs.append,
                     Timing(sim_init_s=0.5, boot_urc_s=0.1))
    m.reg_n["+CEREG"] = 5
    return m, sched, urcs, source


def test_boot_sim_init_attach(machine):
    m, sched, urcs, _ = machine
    m.boot()
    assert (m.cfun, m.uicc) == (1, Uicc.NOT_READY)
    m.reg_n["+CEREG"] = 5
    sched.advance(0.2)
    assert urcs == ["RDY", "APP RDY"]
    sched.advance(0.4)
    assert m.uicc == Uicc.READY
    assert urcs[2:] == ["+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+CEREG: 2"]
    sched.advance(0.3)
    assert urcs[-1] == '+CEREG: 1,"002F","0012BEEF",7'
    assert m.pdp[1].address == "10.45.0.2" and m.pdp[1].active


def test_coverage_loss_search_timeout_and_cfun(machine):
    m, sched, urcs, _ = machine
    m.boot()
    m.reg_n["+CEREG"] = 2
    sched.advance(2)
    assert m.registered
    m.set_coverage("bootstrap", False)
    assert m.reg.stat == 2 and not m.pdp[1].active
    sched.advance(1)
    assert (m.reg.stat, m.reg.cause, m.reg.network.name) == (3, 15, "operational")
    assert urcs[-1] == '+CEREG: 3,"1A2B","00C0FFEE",9'  # n=2: no cause
    m.set_coverage("operational", False)
    sched.advance(m.networks.search_timeout_s + 1)
    assert urcs[-2:] == ["+CEREG: 2", "+CEREG: 0"]
    m.set_coverage("bootstrap", True)
    sched.advance(1)
    assert m.registered
    m.set_cfun(4)
    assert m.reg.stat == 0 and m.uicc == Uicc.READY
    m.set_cfun(0)
    assert m.uicc == Uicc.OFF


def test_refresh_switches_network(machine):
    m, sched, urcs, source = machine
    m.boot()
    m.reg_n["+CEREG"] = 1
    sched.advance(2)
    sid = m.open_session(m.backend.open_channel(b"\xa0\x00\x00\x05\x59\x10\x10"))
    assert m.sessions == {sid: 1}
    source.sub = Subscriber("8900102000000000018", "001020000000001", "internet")
    del urcs[:]
    m.refresh()
    assert m.sessions == {} and m.backend.channels == set() and m.backend.card.resets == 1
    assert urcs == ["+CEREG: 2", "+CPIN: NOT READY"]
    sched.advance(2)
    assert urcs[2:5] == ["+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE"]
    assert m.reg.network.name == "operational" and m.registered
    assert m.pdp[1].address == "10.46.0.2"
    assert m.status()["iccid"] == "8900102000000000018"


def test_backend_channels_and_cap():
    backend = UiccBackend(TinyCard(), max_channels=2)
    a = backend.open_channel(b"\xa0\x00")
    backend.open_channel(b"\xa0\x00")
    with pytest.raises(UiccError) as exc:
        backend.open_channel(b"\xa0\x00")
    assert exc.value.cme == 3
    assert backend.transmit_channel(a, bytes.fromhex("80CA000000"), get_response=True) == bytes([a]) + b"\x90\x00"
    backend.close_channel(a)
    with pytest.raises(UiccError):
        backend.transmit_channel(a, bytes.fromhex("80CA000000"), get_response=True)
    assert with_channel(0x80, 2) == 0x82 and with_channel(0x81, 5) == 0xC1


def test_scheduler_keys_replace_and_cancel():
    s = Scheduler(manual=True)
    hits = []
    s.call_later(1, lambda: hits.append("a"), key="k")
    s.call_later(2, lambda: hits.append("b"), key="k")
    s.call_later(0.5, lambda: hits.append("c"), key="x")
    s.cancel("x")
    s.advance(1.5)
    assert hits == []
    s.advance(1)
    assert hits == ["b"] and not s.pending("k")
