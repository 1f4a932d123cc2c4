"""Transcript replayer: strict divergence reports, masks, lenient resync, port loss, escapes."""

from __future__ import annotations

import json

import pytest

from sgp32hil.drivers.at import AtChannel, AtTimeout, Modem, PortGone, load_profile
from sgp32hil.drivers.at.replay import MASK_CGLA_DATA, ReplayDivergence, ReplaySerial, load_records, unescape
from sgp32hil.drivers.at.transcript import escape_bytes


def transcript(*items) -> list[str]:
    out = []
    t = 100.0
    for direction, data in items:
        t += 0.01
        rec = {"t": t, "dir": direction, "data": escape_bytes(data)}
        out.append(json.dumps(rec))
    return out


LINES = transcript(
    ("event", b"open loop://"),
    ("rx", b"\r\nRDY\r\n"),
    ("tx", b"AT+CGMI\r"),
    ("rx", b"\r\nQuectel\r\n"),
    ("rx", b"\r\nOK\r\n"),
    ("tx", b'AT+CGLA=1,10,"80CA00005A"\r'),
    ("rx", b'\r\n+CGLA: 4,"6A88"\r\n\r\nOK\r\n'),
    ("tx", b"AT+CGMM\r"),
    ("rx", b"\r\nBG96\r\n\r\nOK\r\n"),
)


def channel_for(port: ReplaySerial) -> AtChannel:
    return AtChannel("loop://", serial_factory=ReplaySerial.factory(port)).open()


def test_unescape_round_trip():
    raw = bytes(range(256))
    assert unescape(escape_bytes(raw)) == raw


def test_strict_replay_matches_and_finishes():
    port = ReplaySerial(load_records(LINES))
    with channel_for(port) as ch:
        assert ch.command("AT+CGMI").lines == ("Quectel",)
        assert ch.command('AT+CGLA=1,10,"80CA00005A"').lines == ('+CGLA: 4,"6A88"',)
        assert ch.command("AT+CGMM").lines == ("BG96",)
        assert [e.line for e in ch.urc_history()] == ["RDY"]
    assert port.finished and port.matched == 3


def test_strict_divergence_names_record_and_lines():
    port = ReplaySerial(load_records(LINES))
    with channel_for(port) as ch:
        ch.command("AT+CGMI")
        with pytest.raises(ReplayDivergence) as exc:
            ch.command('AT+CGLA=1,10,"80CA00009F"')
    assert exc.value.index == 5
    assert exc.value.expected == 'AT+CGLA=1,10,"80CA00005A"'
    assert "transcript record 5" in str(exc.value)


def test_masks_hide_variable_fields():
    port = ReplaySerial(load_records(LINES), masks=[MASK_CGLA_DATA])
    with channel_for(port) as ch:
        ch.command("AT+CGMI")
        assert ch.command('AT+CGLA=2,10,"80CA00009F"').lines == ('+CGLA: 4,"6A88"',)


def test_lenient_resyncs_and_records_divergences():
    port = ReplaySerial(load_records(LINES), strict=False)
    with channel_for(port) as ch:
        assert ch.command("AT+CGMM").lines == ("BG96",)
        assert not ch.command("AT+XYZ", check=False).ok
    assert [d.got for d in port.divergences] == ["AT+CGMM", "AT+XYZ"]


def test_end_of_transcript_and_port_loss():
    lines = transcript(("tx", b"AT\r"), ("rx", b"\r\nOK\r\n"), ("event", b"port gone: read failed"))
    port = ReplaySerial(load_records(lines))
    with channel_for(port) as ch:
        ch.command("AT")
        assert ch.wait_gone(2)
        with pytest.raises(PortGone):
            ch.command("AT")
    port = ReplaySerial(load_records(transcript(("tx", b"AT\r"), ("rx", b"\r\nOK\r\n"))))
    with channel_for(port) as ch:
        ch.command("AT")
        with pytest.raises(ReplayDivergence) as exc:
            ch.command("AT+CGMI", timeout=0.2)
        assert exc.value.index is None


def test_modem_driver_over_replay():
    lines = transcript(("tx", b"AT\r"), ("rx", b"\r\nOK\r\n"), ("tx", b"AT+QCCID\r"),
                       ("rx", b"\r\n+QCCID: 8900101000000000019\r\n\r\nOK\r\n"))
    port = ReplaySerial(load_records(lines), time_scale=1.0)
    with Modem(channel_for(port), load_profile("quectel-bg95")) as m:
        m.wait_responsive(1)
        assert m.iccid() == "8900101000000000019"
    with pytest.raises(AtTimeout):
        raise AtTimeout("x", 0)
