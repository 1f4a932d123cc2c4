"""Bench and rack files: every fixture loads, and bad input gives file:line:key errors that say what to do."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sgp32hil.harness import bench as benchmod
from sgp32hil.harness.bench import Bench, BenchError, load_bench, load_rack, parse_bench

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "benches"

MINIMAL = """\
name: t1
euicc:
  via: pcsc
  reader: 0
"""


def write(tmp_path: Path, text: str, name: str = "bench.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> BenchError:
    path = write(tmp_path, text)
    with pytest.raises(BenchError) as info:
        load_bench(path)
    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}:")
    return info.value


# --- the shipped benches -----------------------------------------------------------------------------


def test_default_bench_is_the_virtual_fixture():
    path = benchmod.default_bench_path()
    assert path == FIXTURES / "virtual.yaml"
    b = load_bench(path)
    assert b.name == "virtual"
    assert b.sgp32_version == "1.2"
    assert b.modem.port.virtual and b.modem.port.spec is None and b.modem.vendor == "quectel-bg95"
    assert b.euicc.via == "virtual" and b.euicc.vpcd_port == 35963
    assert b.ipa.mode == "host"
    # port 0: the harness picks a free port at start and gives the software eUICC the running eIM's address
    assert b.eim.bundled and b.eim.port == 0 and b.smdp.bundled and b.smdp.port == 0
    assert b.pki_dir == (FIXTURES.parent / "pki" / "generated").resolve()
    assert b.networks == (FIXTURES.parent / "networks" / "default.yaml").resolve()
    assert b.bootstrap_iccid == "8900101000000000019"
    assert b.profiles.named("operational").imsi == "001020000000001"
    assert b.has("virtual", "fallback", "ipa=host", "sgp32=1.2", "euicc=virtual", "modem")
    assert not b.has("ipa=device")
    assert b.reset_ladder[0].kind == "at" and b.reset_ladder[0].at == "AT+CFUN=1,1"


@pytest.mark.parametrize("path", sorted(benchmod.iter_bench_files(FIXTURES)), ids=lambda p: p.name)
def test_every_fixture_bench_loads(path):
    b = load_bench(path, check_files=False)
    assert isinstance(b, Bench) and b.source == path
    assert b.pki_dir is not None


def test_lab_bg95_bench():
    b = load_bench(FIXTURES / "lab-bg95-euicc-via-modem.yaml", check_files=False)
    assert b.modem.port.path.startswith("/dev/serial/by-path/")
    assert b.modem.port.spec == b.modem.port.path
    assert b.euicc.via == "modem" and b.euicc.apdu_path == "auto"
    steps = b.reset_ladder
    assert [s.kind for s in steps] == ["at", "command"]
    assert steps[0].at == "AT+CFUN=1,1" and steps[1].argv[0] == "uhubctl"
    assert steps[1].describe() == "USB power cycle"
    assert b.profiles.operational[0].package.name.endswith(".der")


def test_lab_bg95_bench_names_its_missing_package():
    with pytest.raises(BenchError) as info:
        load_bench(FIXTURES / "lab-bg95-euicc-via-modem.yaml")
    assert info.value.key == "profiles.operational[0].package"
    assert "file not found" in str(info.value)


def test_lab_reader_bench_has_no_modem():
    b = load_bench(FIXTURES / "lab-usb-reader.yaml")
    assert b.modem is None and not b.has("modem")
    assert b.euicc.via == "pcsc" and isinstance(b.euicc.reader, str)
    assert b.budgets.download == 120 and b.budgets.attach == benchmod.Budgets().attach


def test_rack_example():
    rack = load_rack(FIXTURES / "rack-example.yaml", check_files=False)
    assert rack.name == "example-rack"
    assert rack.slots == ("lab-bg95-01", "lab-reader-01", "lab-reader-02")
    inline = rack.slot("lab-reader-02")
    assert inline.sgp32_version == "1.0" and inline.euicc.reader == 1
    assert inline.pki_dir == (FIXTURES.parent / "pki" / "generated").resolve()
    assert [b.name for b in rack.matching("modem")] == ["lab-bg95-01"]
    with pytest.raises(BenchError, match="no slot 'nope'.*lab-bg95-01"):
        rack.slot("nope")


# --- model behaviour ---------------------------------------------------------------------------------


def test_defaults_and_version_override(tmp_path):
    b = load_bench(write(tmp_path, MINIMAL))
    assert b.sgp32_version == "1.2" and b.modem is None and b.eim is None and b.pki_dir is None
    assert b.ipa == benchmod.Ipa() and b.budgets == benchmod.Budgets()
    v10 = b.with_version("1.0")
    assert v10.sgp32_version == "1.0" and v10.has("sgp32=1.0") and b.has("sgp32=1.2")
    with pytest.raises(BenchError, match="sgp32_version"):
        b.with_version("2.0")


def test_unquoted_numbers_keep_their_digits(tmp_path):
    b = load_bench(write(tmp_path, MINIMAL + """\
        sgp32_version: 1.0
        profiles:
          bootstrap: {iccid: 8900101000000000019, imsi: 001010000000001}
        """.replace("        ", "")))
    assert b.sgp32_version == "1.0"
    assert b.profiles.bootstrap.imsi == "001010000000001"
    assert b.bootstrap_iccid == "8900101000000000019"


def test_relative_paths_resolve_against_the_bench_folder(tmp_path):
    sub = tmp_path / "lab"
    sub.mkdir()
    (tmp_path / "ca.pem").write_text("x")
    b = load_bench(write(sub, MINIMAL + """\
        eim: {url: "https://eim.lab.example:8443", ca: ../ca.pem}
        smdp: {bundled: true, host: "::1", pki: pki}
        """.replace("        ", "")))
    assert b.eim.ca == tmp_path / "ca.pem" and b.eim.address == "eim.lab.example:8443"
    assert b.smdp.pki == sub / "pki" and b.smdp.address == "[::1]:8443"


def test_port_identities(tmp_path):
    def port(spec: str):
        return load_bench(write(tmp_path, MINIMAL + f"modem: {{port: {spec}}}\n")).modem.port

    assert port("{usb: {serial: 0123ABC, interface: 2}}").spec == "usb:0123ABC:2"
    assert port("{usb: {serial: 12345}}").spec == "usb:12345"
    assert port('{url: "rfc2217://lab-host:4001"}').spec == "rfc2217://lab-host:4001"
    assert port("{path: /dev/serial/by-id/usb-Quectel-if02-port0}").path.endswith("if02-port0")


def test_reset_command_string_is_split(tmp_path):
    b = load_bench(write(tmp_path, MINIMAL + "reset_ladder:\n  - {command: \"relay-ctl --ch 3 'off on'\"}\n"))
    assert b.reset_ladder[0].argv == ("relay-ctl", "--ch", "3", "off on")
    assert b.reset_ladder[0].timeout_s == 60.0


def test_yaml_anchors_and_merge_keys(tmp_path):
    b = load_bench(write(tmp_path, MINIMAL + """\
        smdp: &server {bundled: true, pki: pki}
        eim:
          <<: *server
          port: 9000
        """.replace("        ", "")))
    assert b.eim.port == 9000 and b.smdp.port == 8443


def test_parse_bench_from_text():
    b = parse_bench(MINIMAL, "/somewhere/inline.yaml")
    assert b.source == Path("/somewhere/inline.yaml")


# --- errors ------------------------------------------------------------------------------------------

BAD = [
    # (snippet, line, key, fragment of the message)
    ("euicc: {via: pcsc, reader: 0}\n", 1, "", "missing key 'name'"),
    ("name: x\n", 1, "", "missing key 'euicc'"),
    ("name: [x]\neuicc: {via: pcsc, reader: 0}\n", 1, "name", "expected a string, got a list"),
    ("name: x\neuicc:\n  via: pcsc\n", 3, "euicc", "missing key 'reader'"),
    ("name: x\neuicc: {via: usb, reader: 0}\n", 2, "euicc.via", "expected one of pcsc, modem, virtual, got a string 'usb'"),
    ("name: x\nsgp32_version: 1.1\neuicc: {via: pcsc, reader: 0}\n", 2, "sgp32_version", "expected one of 1.0, 1.2"),
    ("name: x\neuicc: {via: pcsc, reader: 0, vpcd_port: 1}\n", 2, "euicc.vpcd_port", "not used with via: pcsc"),
    ("name: x\neuicc: {via: modem}\n", 2, "euicc.via", "needs a modem"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: /dev/ttyUSB0\n", 4, "modem.port",
     "/dev/ttyUSB0 is not a stable identity"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port:\n    path: /dev/ttyUSB0\n", 5, "modem.port.path",
     "re-enumerate"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {path: /dev/ttyACM3}\n", 4, "modem.port.path",
     "/dev/serial/by-path/"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {path: /dev/serial/by-path/a, url: 'socket://h:1'}\n",
     4, "modem.port", "give only one of path, url"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {}\n", 4, "modem.port",
     "missing; expected one of path, usb, url, virtual"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {url: 'tcp://h:1'}\n", 4, "modem.port.url",
     "socket://HOST:PORT or rfc2217://HOST:PORT"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {virtual: true}\n  vendor: {name: bg95}\n", 5,
     "modem.vendor", "expected a vendor profile name, 'auto' or a profile .yaml file, got a mapping"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {virtual: true}\n  vendor: 95\n", 5,
     "modem.vendor", "got an integer '95'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {virtual: true}\n  vendor: quectel-bg99\n", 5,
     "modem.vendor", "unknown vendor profile 'quectel-bg99'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem:\n  port: {virtual: true}\n  baudrate: fast\n", 5,
     "modem.baudrate", "expected an integer 300..4000000, got a string 'fast'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\neim: {bundled: true, host: 0.0.0.0, pki: p}\n", 3, "eim.host",
     "loopback"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nsmdp: {bundled: true, host: 10.0.0.5, pki: p}\n", 3, "smdp.host",
     "got '10.0.0.5'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nsmdp: {bundled: true}\n", 3, "smdp", "missing key 'pki'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nsmdp: {url: 'http://dp.example'}\n", 3, "smdp.url", "https://"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nsmdp: {bundled: true, pki: p, url: 'https://x'}\n", 3, "smdp.url",
     "not used with bundled: true"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nipa: {mode: ipad}\n", 3, "ipa.mode", "expected one of host, device, ipae"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nipa: {mode: host, poll_interval: 3}\n", 3, "ipa.poll_interval",
     "did you mean 'poll_interval_s'?"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nbudgets: {attach: -1}\n", 3, "budgets.attach",
     "expected a positive number of seconds"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nbudgets: {boot: 3}\n", 3, "budgets.boot", "unknown key"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nreset_ladder:\n  - {at: 'AT+CFUN=1,1'}\n", 4, "reset_ladder[0].at",
     "needs a modem"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nmodem: {port: {virtual: true}}\nreset_ladder:\n  - {at: AT+CFUN=1,1}\n",
     5, "reset_ladder[0]", "got an integer '1' (inside {...} a comma ends a value: quote values that contain commas)"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nreset_ladder:\n  - {command: []}\n", 4, "reset_ladder[0].command",
     "non-empty command"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nreset_ladder:\n  - {at: AT, command: x}\n", 4, "reset_ladder[0]",
     "give only one of at, command"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\ncapabilities: [Fallback]\n", 3, "capabilities[0]", "lower-case tag"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\ncapabilities: [ipa=device]\n", 3, "capabilities[0]",
     "contradicts the bench (ipa=host)"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\ncapabilities: [virtual]\n", 3, "capabilities[0]",
     "euicc.via is pcsc"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\ncapabilities: fallback\n", 3, "capabilities",
     "expected a list of capability tags"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nnetworks: n.yaml\n", 3, "networks", "simulated modem only"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nprofiles:\n  bootstrap: {iccid: '123'}\n", 4,
     "profiles.bootstrap.iccid", "expected an ICCID of 18..20 digits, got '123'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nprofiles:\n  operational:\n    - {name: a, apn: internet}\n", 5,
     "profiles.operational[0]", "missing key 'imsi'"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nprofiles:\n  bootstrap: {iccid: '8900101000000000019'}\n"
     "  operational:\n    - {name: a, imsi: '001020000000001', apn: i, iccid: '8900101000000000019'}\n", 6,
     "profiles.operational[0].iccid", "also given on line 4"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nname: y\n", 3, "name", "duplicate key (first given on line 1)"),
    ("name: x\neuicc: {via: pcsc, reader: 0}\nfoo: 1\n", 3, "foo", "unknown key"),
    ("name: x\neuicc: {via: pcsc, reader: [0\n", 3, "", "not valid YAML"),
    ("- just\n- a list\n", 1, "", "expected a bench mapping"),
]


@pytest.mark.parametrize("snippet,line,key,fragment", BAD, ids=[f"{b[2] or 'top'}-{i}" for i, b in enumerate(BAD)])
def test_bad_bench(tmp_path, snippet, line, key, fragment):
    err = error_of(tmp_path, snippet)
    assert fragment in str(err), str(err)
    assert err.line == line, str(err)
    assert err.key == key, str(err)
    assert isinstance(err, ValueError)


def test_empty_file(tmp_path):
    err = error_of(tmp_path, "")
    assert "empty file" in str(err)


def test_missing_file(tmp_path):
    with pytest.raises(BenchError, match="file not found") as info:
        load_bench(tmp_path / "nope.yaml")
    assert info.value.file.endswith("nope.yaml")


def test_unknown_network_name(tmp_path):
    (tmp_path / "nets.yaml").write_text("networks:\n  - {name: home, plmn: '00101'}\n")
    err = error_of(tmp_path, MINIMAL + "modem: {port: {virtual: true}}\nnetworks: nets.yaml\n"
                   "profiles:\n  bootstrap: {iccid: '8900101000000000019', network: roaming}\n")
    assert err.key == "profiles.bootstrap.network" and err.line == 8
    assert "unknown network 'roaming' (the networks file has: home)" in str(err)


def test_missing_networks_file_is_named(tmp_path):
    err = error_of(tmp_path, MINIMAL + "modem: {port: {virtual: true}}\nnetworks: nets.yaml\n")
    assert err.key == "networks" and err.line == 6 and "file not found" in str(err)


# --- racks -------------------------------------------------------------------------------------------


def test_rack_with_files_and_inline_benches(tmp_path):
    write(tmp_path, MINIMAL.replace("t1", "a"), "a.yaml")
    rack = load_rack(write(tmp_path, """\
        benches:
          - a.yaml
          - name: b
            euicc: {via: virtual, vpcd_port: 35964}
        """, "rack.yaml"))
    assert rack.slots == ("a", "b") and rack.name == "rack"
    assert rack.slot("b").euicc.vpcd_port == 35964


def test_rack_duplicate_slot(tmp_path):
    write(tmp_path, MINIMAL, "a.yaml")
    path = write(tmp_path, """\
        benches:
          - a.yaml
          - name: t1
            euicc: {via: pcsc, reader: 1}
        """, "rack.yaml")
    with pytest.raises(BenchError) as info:
        load_rack(path)
    err = info.value
    assert err.file == str(path) and err.line == 3 and err.key == "benches[1]"
    assert "duplicate slot 't1' (first on line 2)" in str(err)


def test_rack_port_clash(tmp_path):
    path = write(tmp_path, """\
        benches:
          - {name: a, euicc: {via: virtual}}
          - {name: b, euicc: {via: virtual}}
        """, "rack.yaml")
    with pytest.raises(BenchError, match="vpcd port 35963, as slot 'a: euicc.vpcd_port' does") as info:
        load_rack(path)
    assert info.value.line == 3


def test_rack_errors_inside_a_bench_file_name_that_file(tmp_path):
    bad = write(tmp_path, "name: a\neuicc: {via: pcsc}\n", "a.yaml")
    with pytest.raises(BenchError) as info:
        load_rack(write(tmp_path, "benches: [a.yaml]\n", "rack.yaml"))
    assert info.value.file == str(bad) and info.value.key == "euicc"


def test_rack_missing_bench_file(tmp_path):
    with pytest.raises(BenchError, match="file not found") as info:
        load_rack(write(tmp_path, "benches:\n  - gone.yaml\n", "rack.yaml"))
    assert info.value.file.endswith("gone.yaml")


def test_rack_needs_benches(tmp_path):
    with pytest.raises(BenchError, match="missing key 'benches'"):
        load_rack(write(tmp_path, "name: r\n", "rack.yaml"))


def test_port_zero_means_any_free_port_and_is_not_a_listener_clash(tmp_path):
    text = """
name: a
euicc: {via: virtual, vpcd_port: 35963}
eim: {bundled: true, port: 0, pki: pki}
smdp: {bundled: true, port: 0, pki: pki}
"""
    b = parse_bench(text, tmp_path / "a.yaml", check_files=False)
    assert b.eim.port == 0 and b.smdp.port == 0
    assert benchmod._listeners(b) == {"vpcd port 35963": "euicc.vpcd_port"}
    with pytest.raises(BenchError) as err:
        parse_bench(text.replace("port: 0, pki", "port: -1, pki", 1), tmp_path / "a.yaml", check_files=False)
    assert err.value.key == "eim.port" and "0..65535" in str(err.value)


def test_broken_virtual_bench_uses_the_rejecting_network():
    b = load_bench(FIXTURES / "virtual-broken.yaml")
    assert b.networks.name == "broken-operational.yaml"
    assert b.profiles.named("operational").network == "operational"
