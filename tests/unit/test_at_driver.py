"""Modem driver over a scripted port: init fallbacks, ICCID per profile, registration waits, reset, APDU commands."""

from __future__ import annotations

import pytest

from sgp32hil.drivers.at import AtChannel, AtTimeout, Modem, ScriptedSerial, load_profile

OK = "\r\nOK\r\n"


def make(profile: str, fake: ScriptedSerial) -> Modem:
    for cmd in ("AT", "ATE0", "ATV1", r"AT\+CMEE=2", r"AT\+C[EG]?REG=[0-5]", r"AT%XSIM=1", r"AT#QSS=2"):
        fake.on(cmd, OK)
    return Modem(AtChannel("loop://", serial_factory=ScriptedSerial.factory(fake)).open(), load_profile(profile))


def test_init_falls_back_to_lower_cereg_mode():
    fake = ScriptedSerial()
    m = make("nordic-nrf91", fake)
    fake.on(r"AT\+CEREG=5", "\r\nERROR\r\n")
    fake.on(r"AT\+CEREG=4", "\r\nERROR\r\n")
    m.init()
    assert m.reg_n == {"+CEREG": 2}
    m.close()


@pytest.mark.parametrize(
    "profile, command, reply",
    [
        ("quectel-bg95", r"AT\+QCCID", "+QCCID: 89860318760228617503"),
        ("simcom-sim7080", r"AT\+CCID", "89860318760228617503"),
        ("simcom-a76xx", r"AT\+CICCID", "+ICCID: 89860318760228617503"),
        ("telit-me910", r"AT#CCID", "#CCID: 89860318760228617503"),
        ("strict-27007", r"AT\+CRSM=176,12258,0,0,10", '+CRSM: 144,0,"98683081672082165730"'),
    ],
)
def test_iccid_per_profile(profile, command, reply):
    fake = ScriptedSerial()
    m = make(profile, fake)
    fake.on(command, f"\r\n{reply}\r\n\r\nOK\r\n")
    assert m.iccid() == "89860318760228617503"
    m.close()


def test_sim_state_not_inserted():
    fake = ScriptedSerial()
    m = make("quectel-bg95", fake)
    fake.on(r"AT\+CPIN\?", "\r\n+CME ERROR: SIM not inserted\r\n")
    assert m.sim_state().code == "NOT INSERTED"
    m.close()


def test_wait_registered_consumes_urcs():
    fake = ScriptedSerial()
    m = make("nordic-nrf91", fake)
    fake.on(r"AT\+CEREG\?", "\r\n+CEREG: 5,2\r\nOK\r\n")
    fake.inject('\r\n+CEREG: 3,"002F","0012BEEF",7,0,15\r\n', delay=0.1)
    fake.inject('\r\n+CEREG: 1,"002F","0012BEEF",9\r\n', delay=0.2)
    reg = m.wait_registered(timeout=3)
    assert reg.registered and reg.act == 9 and reg.n is None
    denied = []
    fake.on(r"AT\+CEREG\?", '\r\n+CEREG: 5,3,"002F","0012BEEF",7,0,15\r\nOK\r\n')
    with pytest.raises(AtTimeout, match="registration denied"):
        m.wait_registered(lambda r: denied.append(r) or r.registered, timeout=0.3, poll_s=0.1)
    assert denied and denied[-1].reject_cause == 15
    m.close()


def test_registration_query_ignores_urc_shaped_line():
    fake = ScriptedSerial()
    m = make("nordic-nrf91", fake)
    fake.on(r"AT\+CEREG\?", '\r\n+CEREG: 2\r\n+CEREG: 5,5,"002F","0012BEEF",7\r\nOK\r\n')
    with m.channel.subscribe("+CEREG:") as sub:
        reg = m.registration()
        assert reg.n == 5 and reg.roaming
        assert sub.get(1).line == "+CEREG: 2"
    m.close()


def test_reset_waits_for_boot_urc():
    fake = ScriptedSerial()
    m = make("quectel-bg95", fake)
    fake.on(r"AT\+CFUN=1,1", "\r\nOK\r\n")
    fake.inject("\r\nRDY\r\n", delay=0.3)
    assert m.profile.reset.reenumerates  # the fake never vanishes: wait_gone times out, reopen is immediate
    m.reset(budget_s=5)
    assert any(e.line == "RDY" for e in m.channel.urc_history())
    m.close()


def test_apdu_commands_use_profile_shapes():
    fake = ScriptedSerial()
    m = make("simcom-sim7080", fake)
    fake.on(r'AT\+CCHO="A0000005591010FFFFFFFF8900000100"', "\r\n+CCHO: 2\r\n\r\nOK\r\n")
    fake.on(r'AT\+CGLA=2,22,"81E2910006BF3E035C015A"', '\r\n+CGLA:4,"611A"\r\n\r\nOK\r\n')
    fake.on(r"AT\+CCHC=2", OK)
    fake.on(r'AT\+CSIM=10,"81C000001A"', '\r\n+CSIM: 8,"BF3E9000"\r\n\r\nOK\r\n')
    sid = m.open_logical_channel(bytes.fromhex("A0000005591010FFFFFFFF8900000100"))
    assert sid.raw == "2"
    assert m.transmit_logical(sid, bytes.fromhex("81E2910006BF3E035C015A")) == bytes.fromhex("611A")
    assert m.csim(bytes.fromhex("81C000001A")) == bytes.fromhex("BF3E9000")
    m.close_logical_channel(sid)
    m.close()


def test_pdp_operator_signal():
    fake = ScriptedSerial()
    m = make("strict-27007", fake)
    fake.on(r'AT\+CGDCONT=1,"IP","internet"', OK)
    fake.on(r"AT\+CGDCONT\?", '\r\n+CGDCONT: 1,"IP","internet","0.0.0.0",0,0\r\nOK\r\n')
    fake.on(r"AT\+CGACT=1,1", OK)
    fake.on(r"AT\+CGACT\?", "\r\n+CGACT: 1,1\r\nOK\r\n")
    fake.on(r"AT\+CGATT\?", "\r\n+CGATT: 1\r\nOK\r\n")
    fake.on(r"AT\+CGPADDR=1", '\r\n+CGPADDR: 1,"10.45.0.2"\r\nOK\r\n')
    fake.on(r"AT\+COPS\?", '\r\n+COPS: 0,2,"21401",7\r\nOK\r\n')
    fake.on(r"AT\+CSQ", "\r\n+CSQ: 17,99\r\nOK\r\n")
    fake.on(r"AT\+CESQ", "\r\nERROR\r\n")
    m.define_pdp(1, "internet")
    assert m.pdp_contexts()[0].apn == "internet"
    m.activate_pdp(1)
    assert m.pdp_states() == {1: True} and m.attached()
    assert m.pdp_address(1) == ("10.45.0.2",)
    assert m.operator().operator == "21401"
    sig = m.signal()
    assert sig.csq is not None and sig.csq.rssi == 17 and sig.cesq is None
    m.close()


def test_open_autodetects_profile():
    fake = ScriptedSerial()
    for cmd in ("AT", "ATE0", "ATV1", r"AT\+CMEE=2", r"AT\+C[EG]?REG=[0-5]"):
        fake.on(cmd, OK)
    fake.on(r"AT\+CGMI", "\r\nQuectel\r\n\r\nOK\r\n")
    fake.on(r"AT\+CGMM", "\r\nBG96\r\n\r\nOK\r\n")
    fake.on(r"AT\+CGMR", "\r\nBG96MAR02A07M1G\r\n\r\nOK\r\n")
    fake.on(r"AT\+CGSN", "\r\n868446031757533\r\n\r\nOK\r\n")
    import sgp32hil.drivers.at.driver as drv

    orig = drv.AtChannel

    class Patched(orig):  # type: ignore[misc, valid-type]
        def __init__(self, port, **kw):
            super().__init__(port, serial_factory=ScriptedSerial.factory(fake), **kw)

    drv.AtChannel = Patched
    try:
        m = Modem.open("loop://")
    finally:
        drv.AtChannel = orig
    assert m.profile.name == "quectel-bg95"
    assert m.identity().imei == "868446031757533"
    m.close()
