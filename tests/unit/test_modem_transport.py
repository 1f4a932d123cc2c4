"""ModemApduTransport against a scripted module: probe and fallback, session ids, CLA policy, leaks, errors."""

from __future__ import annotations

import dataclasses

import pytest

from sgp32hil.drivers.apdu.base import ApduError, ChannelTransport, TransportError
from sgp32hil.drivers.apdu.modem import CglaTransport, CsimTransport, ModemApduTransport, ModemTransportError
from sgp32hil.drivers.at import AtChannel, Modem, ScriptedSerial, load_profile
from sgp32hil.drivers.es10.session import Es10Session

ISDR = "A0000005591010FFFFFFFF8900000100"


def modem_with(port: ScriptedSerial, **apdu) -> Modem:
    profile = load_profile("strict-27007")
    if apdu:
        profile = dataclasses.replace(profile, apdu=dataclasses.replace(profile.apdu, **apdu))
    channel = AtChannel("loop://", serial_factory=ScriptedSerial.factory(port)).open()
    return Modem(channel, profile)


def test_probe_uses_real_ccho_and_cchc():
    port = ScriptedSerial()
    port.on(rf'AT\+CCHO="{ISDR}"', "\r\n+CCHO: 2\r\n\r\nOK\r\n")
    port.on(r"AT\+CCHC=2", "\r\nOK\r\n")
    with modem_with(port) as m:
        t = ModemApduTransport(m)
        assert isinstance(t, CglaTransport) and isinstance(t, ChannelTransport)
        assert b"=?" not in bytes(port.written)
        assert bytes(port.written).count(b"AT+CCHC=2") == 1
        assert t.block_size == 120


def test_falls_back_to_csim_when_ccho_fails():
    port = ScriptedSerial()
    port.on(r"AT\+CCHO=.*", "\r\n+CME ERROR: 4\r\n")
    port.on(r'AT\+CSIM=10,"0070000001"', '\r\n+CSIM: 6,"019000"\r\n\r\nOK\r\n')
    with modem_with(port) as m:
        t = ModemApduTransport(m, segment=64)
        assert isinstance(t, CsimTransport) and not isinstance(t, ChannelTransport)
        assert t.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
        assert t.session().block_size == 64
    port2 = ScriptedSerial()
    port2.on(r"AT\+CCHO=.*", "\r\n+CME ERROR: 4\r\n")
    with modem_with(port2) as m, pytest.raises(ModemTransportError):
        ModemApduTransport(m, path="cgla")


@pytest.mark.parametrize("policy, sent_cla", [("passthrough", "81"), ("zero", "80"), ("channel", "83")])
def test_cla_policy_and_hex_sessions(policy, sent_cla):
    port = ScriptedSerial()
    port.on(rf'AT\+CCHO="{ISDR}"', "\r\n+CCHO: 3\r\n\r\nOK\r\n")
    port.on(r"AT\+CCHC=3", "\r\nOK\r\n")
    port.on(rf'AT\+CGLA=3,22,"{sent_cla}E2910006BF3E035C015A"', '\r\n+CGLA: 8,"BF3E9000"\r\n\r\nOK\r\n')
    with modem_with(port, cla_policy=policy) as m:
        t = ModemApduTransport(m, path="cgla")
        handle = t.open_channel(bytes.fromhex(ISDR))
        assert handle == 3
        assert t.transmit(bytes.fromhex("81E2910006BF3E035C015A")) == bytes.fromhex("BF3E9000")
        t.close()
    assert b"AT+CCHC=3" in bytes(port.written)


def test_hex_session_handle_maps_to_small_channel():
    port = ScriptedSerial()
    port.on(rf'AT\+CCHO="{ISDR}"', "\r\n+CCHO: 0001A2B3\r\n\r\nOK\r\n")
    port.on(r"AT\+CCHC=0001A2B3", "\r\nOK\r\n")
    port.on(r'AT\+CGLA=0001A2B3,12,"81E29100015A"', '\r\n+CGLA: 4,"6A88"\r\n\r\nOK\r\n')
    with modem_with(port, session_id="hex") as m:
        t = ModemApduTransport(m, path="cgla")
        session = Es10Session(t).open()
        assert session.channel == 1
        with pytest.raises(ApduError) as exc:
            session.store_data(bytes.fromhex("5A"))
        assert exc.value.sw == 0x6A88
        session.close()
    assert bytes(port.written).count(b"AT+CCHC=0001A2B3") == 2


def test_no_channel_error_closes_1_to_4_and_retries_once():
    port = ScriptedSerial()
    port.on(rf'AT\+CCHO="{ISDR}"', "\r\n+CCHO: 1\r\n\r\nOK\r\n")
    port.on(rf'AT\+CCHO="{ISDR}"', "\r\n+CME ERROR: 3\r\n", once=True)
    port.on(r"AT\+CCHC=\d", "\r\nOK\r\n")
    port.on(r"AT\+CCHO=\?", "\r\nERROR\r\n")
    with modem_with(port) as m:
        t = CglaTransport(m)
        assert t.open_channel(bytes.fromhex(ISDR)) == 1
    written = bytes(port.written)
    assert all(f"AT+CCHC={n}".encode() in written for n in (1, 2, 3, 4))
    assert written.count(b"AT+CCHO=") == 2


def test_hanging_cgla_is_a_leak_recovered_on_next_open():
    port = ScriptedSerial()
    port.on(rf'AT\+CCHO="{ISDR}"', "\r\n+CCHO: 1\r\n\r\nOK\r\n")
    port.on(r"AT\+CCHC=1", "\r\nOK\r\n")
    port.on(r"AT", "\r\nOK\r\n")
    with modem_with(port) as m:
        m.channel.timeouts = m.channel.timeouts.merged({"+CGLA": 0.2})
        t = CglaTransport(m)
        t.open_channel(bytes.fromhex(ISDR))
        with pytest.raises(ModemTransportError):
            t.transmit(bytes.fromhex("81E2910003BF2D00"))
        assert [s.raw for s in t.leaked] == ["1"] and t.sessions == {}
        t.open_channel(bytes.fromhex(ISDR))
        assert t.leaked == []
        assert bytes(port.written).count(b"AT+CCHC=1") == 1
        with pytest.raises(TransportError):
            t.transmit(b"\x81")


def test_closed_port_is_transport_error():
    port = ScriptedSerial()
    port.on(r'AT\+CSIM=.*', '\r\n+CSIM: 4,"9000"\r\n\r\nOK\r\n')
    with modem_with(port) as m:
        t = ModemApduTransport(m, path="csim")
        assert t.transmit(bytes.fromhex("80AA000000")) == b"\x90\x00"
        port.vanish()
        m.channel.wait_gone(2)
        with pytest.raises(ModemTransportError):
            t.transmit(bytes.fromhex("80AA000000"))
        t.close()
        with pytest.raises(TransportError):
            t.transmit(bytes.fromhex("80AA000000"))
