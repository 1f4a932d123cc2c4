"""AtChannel over a scripted fake port and loop://: framing, echo, finals, URC routing, deadlines."""

from __future__ import annotations

import json
import queue
import re
import threading
import time

import pytest

from sgp32hil.drivers.at import (
    AtChannel,
    AtError,
    AtProtocolError,
    AtTimeout,
    CmeError,
    CmsError,
    FinalKind,
    LineAssembler,
    PortGone,
    ScriptedSerial,
    TimeoutTable,
    classify_final,
    load_profile,
)


@pytest.fixture
def fake():
    return ScriptedSerial()


@pytest.fixture
def chan(fake):
    ch = AtChannel("loop://", serial_factory=ScriptedSerial.factory(fake))
    ch.open()
    yield ch
    ch.close()


def test_urc_between_info_line_and_ok(fake, chan):
    fake.on(r"AT\+CPIN\?", '\r\n+CPIN: READY\r\n\r\n+CEREG: 1,"002F","0012BEEF",7\r\n\r\nOK\r\n')
    sub = chan.subscribe("+CEREG:")
    resp = chan.command("AT+CPIN?")
    assert resp.lines == ("+CPIN: READY",) and resp.ok and resp.final == "OK"
    assert sub.get(1).line == '+CEREG: 1,"002F","0012BEEF",7'


def test_cereg_solicited_only_while_query_in_flight(fake, chan):
    fake.on(r"AT\+CEREG\?", '\r\n+CEREG: 5,1,"002F","0012BEEF",7\r\nOK\r\n')
    fake.on(r"AT\+CSQ", '\r\n+CEREG: 2\r\n+CSQ: 17,99\r\nOK\r\n')
    sub = chan.subscribe("+CEREG")
    assert chan.command("AT+CEREG?").lines == ('+CEREG: 5,1,"002F","0012BEEF",7',)
    assert chan.command("AT+CSQ").lines == ("+CSQ: 17,99",)
    assert sub.get(1).line == "+CEREG: 2"
    with pytest.raises(queue.Empty):
        sub.get(0.05)


@pytest.mark.parametrize("echo", [True, False])
def test_echo_stripped_on_or_off(echo):
    fake = ScriptedSerial(echo=echo)
    fake.on(r"AT\+CGMI", "\r\nQuectel\r\n\r\nOK\r\n")
    with AtChannel("loop://", serial_factory=ScriptedSerial.factory(fake)) as ch:
        assert ch.command("AT+CGMI").lines == ("Quectel",)


def test_pysim_style_echo_with_double_cr():
    fake = ScriptedSerial()
    fake.on("AT", "AT\r\r\nOK\r\n")
    with AtChannel("loop://", serial_factory=ScriptedSerial.factory(fake)) as ch:
        resp = ch.command("AT")
        assert resp.lines == () and resp.ok


def test_bare_info_lines_and_known_urcs(fake, chan):
    fake.on(r"AT\+CGSN", "\r\nRDY\r\n868446031757533\r\nOK\r\n")
    chan.add_known_urc(re.compile(r"^RDY$"))
    sub = chan.subscribe(re.compile("^RDY$"))
    assert chan.command("AT+CGSN").lines == ("868446031757533",)
    assert sub.get(1).line == "RDY"


def test_cme_numeric(fake, chan):
    fake.on(r"AT\+CPIN\?", "\r\n+CME ERROR: 10\r\n")
    with pytest.raises(CmeError) as info:
        chan.command("AT+CPIN?")
    err = info.value
    assert err.code == 10 and err.key == "simnotinserted" and err.matches("SIM not inserted") and err.matches(10)


def test_cme_text_normalised(fake, chan):
    fake.on(r'AT\+CCHO=".*"', "\r\n+CME ERROR: SIM failure\r\n")
    with pytest.raises(CmeError) as info:
        chan.command('AT+CCHO="A0000005591010FFFFFFFF8900000100"')
    assert info.value.code == 13 and info.value.key == "simfailure"


def test_cme_nonstandard_text(fake, chan):
    fake.on(r"AT\+X", "\r\n+CME ERROR: Parameters error\r\n")
    with pytest.raises(CmeError) as info:
        chan.command("AT+X")
    assert info.value.code is None and info.value.key == "parameterserror"


def test_cms_error_and_plain_error(fake, chan):
    fake.on(r"AT\+CMGS.*", "\r\n+CMS ERROR: 304\r\n")
    fake.on(r"AT\+NOPE", "\r\nERROR\r\n")
    with pytest.raises(CmsError) as info:
        chan.command("AT+CMGS=0")
    assert info.value.code == 304
    with pytest.raises(AtError) as info2:
        chan.command("AT+NOPE")
    assert info2.value.kind is FinalKind.ERROR
    resp = chan.command("AT+NOPE", check=False)
    assert not resp.ok and resp.final == "ERROR"


def test_vendor_final_from_profile(fake, chan):
    chan.apply_profile(load_profile("quectel-bg95"))
    fake.on(r"AT\+CSIM=\?", "\r\nCOMMAND NOT SUPPORT\r\n")
    with pytest.raises(AtError) as info:
        chan.command("AT+CSIM=?")
    assert info.value.kind is FinalKind.VENDOR_ERROR


@pytest.mark.parametrize(
    "line, kind, code",
    [
        ("OK", FinalKind.OK, None),
        ("CONNECT 115200", FinalKind.CONNECT, None),
        ("NO CARRIER", FinalKind.NO_CARRIER, None),
        ("+CME ERROR: 3", FinalKind.CME_ERROR, 3),
        ('+CME ERROR: "operation not allowed"', FinalKind.CME_ERROR, 3),
        ("+CMS ERROR: 500", FinalKind.CMS_ERROR, 500),
    ],
)
def test_classify_final(line, kind, code):
    result = classify_final(line)
    assert result is not None and result.kind is kind and result.code == code


def test_classify_non_final():
    assert classify_final("+CPIN: READY") is None
    assert classify_final("OKAY") is None


def test_timeout_has_deadline_and_partial(fake, chan):
    fake.on(r"AT\+CGLA=.*", '\r\n+CGLA: 4,"90')
    t0 = time.monotonic()
    with pytest.raises(AtTimeout) as info:
        chan.command('AT+CGLA=1,10,"80CA9F7F00"', timeout=0.3)
    assert 0.25 < time.monotonic() - t0 < 1.5
    assert '+CGLA: 4,"90' in info.value.partial


def test_late_final_after_timeout_does_not_leak(fake, chan):
    fake.on(r"AT\+SLOW", "\r\n+SLOW: 1\r\nOK\r\n", delay=0.4)
    fake.on("AT", "\r\nOK\r\n")
    fake.on(r"AT\+CSQ", "\r\n+CSQ: 17,99\r\nOK\r\n")
    with pytest.raises(AtTimeout):
        chan.command("AT+SLOW", timeout=0.2)
    time.sleep(0.3)
    assert chan.command("AT+CSQ").lines == ("+CSQ: 17,99",)


def test_timeout_table_longest_prefix():
    table = TimeoutTable()
    assert table.lookup("AT+COPS=?") == 315
    assert table.lookup("AT+COPS=0") == 120
    assert table.lookup("AT+COPS?") == 3
    assert table.lookup("AT+CPIN?") == 10
    assert table.lookup("AT+CFUN=1") == 15
    assert table.lookup('AT+CCHO="A0"') == 30
    assert table.lookup("AT+CGLA=1,4,\"0000\"") == 240
    assert table.lookup("AT+CGMI") == 3
    assert table.merged({"+CFUN=": 180}).lookup("at+cfun=16") == 180


def test_profile_timeouts_apply(chan):
    chan.apply_profile(load_profile("ublox-sara-r5"))
    assert chan.timeouts.lookup("AT+CFUN=16") == 180


def test_garbage_bytes_are_cleaned_and_logged(fake, chan):
    fake.on(r"AT\+CSQ", b"\xff\xfe\x00\r\n\x00+CSQ: 17,99\r\nOK\r\n")
    assert chan.command("AT+CSQ").lines == ("+CSQ: 17,99",)
    records = [json.loads(x) for x in chan.transcript.to_jsonl().splitlines()]
    rx_hex = "".join(r["hex"] for r in records if r["dir"] == "rx" and "hex" in r)
    assert "fffe00" in rx_hex
    assert any(r["dir"] == "event" and "non-printable" in r["data"] for r in records)


def test_overlong_line_discarded_with_clear_error(fake, chan):
    fake.on(r"AT\+BIG", b"\r\n+BIG: " + b"A" * 5000 + b"\r\nOK\r\n")
    fake.on(r"AT\+CSQ", "\r\n+CSQ: 17,99\r\nOK\r\n")
    with pytest.raises(AtProtocolError, match="exceeds 4096"):
        chan.command("AT+BIG")
    assert chan.command("AT+CSQ").lines == ("+CSQ: 17,99",)


def test_prompt_for_data(fake, chan):
    fake.on(r'AT\+CMGS=.*', "\r\n> ")
    fake.on(r"0011.*", "\r\n+CMGS: 7\r\n\r\nOK\r\n")
    resp = chan.command("AT+CMGS=18", data="0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
    assert resp.lines == ("+CMGS: 7",)
    assert fake.written.endswith(b"\x1a")


def test_prompt_missing_times_out(fake, chan):
    fake.on(r'AT\+CMGS=.*', "")
    with pytest.raises(AtTimeout, match="prompt"):
        chan.command("AT+CMGS=18", data="00", timeout=0.2)


def test_one_command_in_flight(fake, chan):
    fake.on(r"AT\+A", "\r\n+A: 1\r\nOK\r\n", delay=0.2)
    fake.on(r"AT\+B", "\r\n+B: 2\r\nOK\r\n")
    results = {}

    def run(name):
        results[name] = chan.command(f"AT+{name}").lines

    threads = [threading.Thread(target=run, args=(n,)) for n in "AB"]
    threads[0].start()
    time.sleep(0.05)
    threads[1].start()
    for t in threads:
        t.join(3)
    assert results == {"A": ("+A: 1",), "B": ("+B: 2",)}
    tx = [r.data for r in chan.transcript.records() if r.dir == "tx"]
    assert tx == [b"AT+A\r", b"AT+B\r"]


def test_callback_subscription_can_issue_commands(fake, chan):
    fake.on(r"AT\+CPIN\?", "\r\n+CPIN: READY\r\nOK\r\n")
    seen = []
    done = threading.Event()

    def on_urc(event):
        seen.append(chan.command("AT+CPIN?").lines)
        done.set()

    chan.subscribe("+QUSIM:", on_urc)
    fake.inject("\r\n+QUSIM: 1\r\n")
    assert done.wait(2) and seen == [("+CPIN: READY",)]


def test_wait_urc_since_mark(fake, chan):
    mark = chan.urc_mark()
    fake.inject("\r\n+CPIN: NOT READY\r\n\r\n+CPIN: READY\r\n")
    time.sleep(0.1)
    assert chan.wait_urc("+CPIN: READY", 1, since=mark).line == "+CPIN: READY"
    with pytest.raises(AtTimeout):
        chan.wait_urc("+CPIN: READY", 0.1)


def test_port_gone_raised_to_in_flight_command(fake, chan):
    fake.on(r"AT\+CGLA=.*", "")
    timer = threading.Timer(0.1, fake.vanish)
    timer.start()
    with pytest.raises(PortGone):
        chan.command('AT+CGLA=1,4,"0000"', timeout=5)
    assert chan.gone
    with pytest.raises(PortGone):
        chan.command("AT")


def test_loop_url_sees_own_command_as_echo():
    """loop:// returns what was written: the echo is stripped and the timeout still fires."""
    with AtChannel("loop://") as ch:
        with pytest.raises(AtTimeout) as info:
            ch.command("AT+CGMI", timeout=0.2)
        assert info.value.lines == ()


def test_line_assembler_variants():
    la = LineAssembler()
    frags = la.feed(b"\r\nA\r\r\nB\rC\nD\n\r")
    assert [f.data for f in frags] == [b"A", b"B", b"C", b"D"]
    assert la.feed(b"+CSQ: 1") == [] and la.partial == b"+CSQ: 1"
    assert [f.data for f in la.feed(b"7,99\r\n")] == [b"+CSQ: 17,99"]
    assert [f.kind for f in la.feed(b"\r\n> ", want_prompt=True)] == ["prompt"]
    la = LineAssembler(max_line=8)
    frags = la.feed(b"0123456789")
    assert frags == []
    frags = la.feed(b"ABC\r\nOK\r\n")
    assert [f.kind for f in frags] == ["discard", "line"] and frags[1].data == b"OK"
