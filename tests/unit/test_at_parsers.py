"""Table-driven tests of the 27.007 parsers with real module replies (source in each row's id)."""

from __future__ import annotations

import pytest

from sgp32hil.drivers.at import parsers as P
from sgp32hil.drivers.at.parsers import ParseError

MM = "ModemManager src/tests/test-modem-helpers.c"


@pytest.mark.parametrize(
    "reply, expected",
    [
        pytest.param(["+CCID: 89014103211118510720"], "89014103211118510720", id="ublox/sierra +CCID (MODEMS.md)"),
        pytest.param(["+QCCID: 89860318760228617503"], "89860318760228617503", id="quectel +QCCID (Quectel forum BG96)"),
        pytest.param(["+ICCID: 89860318760228617503"], "89860318760228617503", id="simcom A76xx +CICCID"),
        pytest.param(["#CCID: 89390100001234567890"], "89390100001234567890", id="telit #CCID"),
        pytest.param(["%XICCID: 8901234567012345678F"], "8901234567012345678", id="nRF91 %XICCID F-padded (Nordic docs)"),
        pytest.param(["89860318760228617503"], "89860318760228617503", id="SIM7080 bare digits"),
        pytest.param(['+CCID: "89014103211118510720"'], "89014103211118510720", id="quoted +CCID"),
        pytest.param(['+CRSM: 144,0,"98101430121181157002"'], "89014103211118510720", id="+CRSM EF_ICCID quoted (MM mm-base-sim.c)"),
        pytest.param(["+CRSM: 144,0,98101430121181157002"], "89014103211118510720", id="+CRSM EF_ICCID unquoted (MM)"),
        pytest.param(['+CRSM: 144,0,"981032547610325476F8"'], "8901234567012345678", id="+CRSM 19-digit with F pad"),
    ],
)
def test_iccid(reply, expected):
    assert P.parse_iccid(reply) == expected


@pytest.mark.parametrize("reply", [["+CRSM: 106,130"], ["+QCCID: 12AB"], ["OK?"], []])
def test_iccid_garbage(reply):
    with pytest.raises(ParseError):
        P.parse_iccid(reply)


@pytest.mark.parametrize(
    "reply, code, ready",
    [
        pytest.param("+CPIN: READY", "READY", True, id="27.007 §8.3"),
        pytest.param("+CPIN: SIM PIN", "SIM PIN", False, id="SIM PIN"),
        pytest.param('+CPIN: "SIM PIN"', "SIM PIN", False, id="nRF91 quoted (MODEMS.md)"),
        pytest.param("+CPIN:SIM PUK", "SIM PUK", False, id="no space"),
        pytest.param("+CPIN: NOT READY", "NOT READY", False, id="REFRESH transient"),
    ],
)
def test_cpin(reply, code, ready):
    state = P.parse_cpin(reply)
    assert state.code == code and state.ready is ready


def test_cpin_garbage_names_line():
    with pytest.raises(ParseError, match=r"\+CPIN.*'\+CREG: 1'"):
        P.parse_cpin(["+CREG: 1"])


R = P.Registration
REG_ROWS = [
    # (line, solicited, expected)
    pytest.param("+CREG: 1,3", True, R("+CREG", 3, n=1), id=f"CREG=1 solicited ({MM})"),
    pytest.param("+CREG: 3", False, R("+CREG", 3), id="CREG=1 URC (MM)"),
    pytest.param("+CREG: 0,1,84CD,00D30173", True, R("+CREG", 1, n=0, area=0x84CD, ci=0xD30173), id="Sierra Mercury solicited (MM)"),
    pytest.param("+CREG: 1,84CD,00D30156", False, R("+CREG", 1, area=0x84CD, ci=0xD30156), id="Sierra Mercury URC (MM)"),
    pytest.param('+CREG: 2,1,"CE00","01CEAD8F"', True, R("+CREG", 1, n=2, area=0xCE00, ci=0x01CEAD8F), id="SE K850i solicited (MM)"),
    pytest.param('+CREG: 1,"CE00","00005449"', False, R("+CREG", 1, area=0xCE00, ci=0x5449), id="SE K850i URC (MM)"),
    pytest.param("+CREG: 2,0,00,0", True, R("+CREG", 0, n=2, area=0, ci=0), id="Huawei E160G unregistered (MM)"),
    pytest.param("+CREG: 2,,", False, R("+CREG", 2), id="Novatel XU870 empty fields (MM)"),
    pytest.param('+CREG:002,001,"18d8","ffff"', True, R("+CREG", 1, n=2, area=0x18D8, ci=0xFFFF), id="Iridium leading zeros (MM)"),
    pytest.param('+CREG: 001,"0001","0010",000', False, R("+CREG", 1, area=1, ci=0x10, act=0), id="URC leading zeros (MM)"),
    pytest.param('+CREG: 2,6,"8B37","0A265185",7', True, R("+CREG", 6, n=2, area=0x8B37, ci=0x0A265185, act=7), id="u-blox TOBY-L2 (MM)"),
    pytest.param('+CGREG: 2,1,"8BE3","00002B5D",3', True, R("+CGREG", 1, n=2, area=0x8BE3, ci=0x2B5D, act=3), id="Ericsson F3607gw (MM)"),
    pytest.param('+CGREG: 1,"1422","00000142",3,"00"', False, R("+CGREG", 1, area=0x1422, ci=0x142, act=3, rac=0), id="CGREG with RAC (MM)"),
    pytest.param("+CGREG: 2,1, 81ED, 1A9CEB", True, R("+CGREG", 1, n=2, area=0x81ED, ci=0x1A9CEB), id="Alcatel X220D spaces (MM)"),
    pytest.param("+CEREG: 2,1, 1F00, 79D903 ,7", True, R("+CEREG", 1, n=2, area=0x1F00, ci=0x79D903, act=7), id="CEREG=2 solicited (MM)"),
    pytest.param("+CEREG: 1, 1F00, 79D903 ,7", False, R("+CEREG", 1, area=0x1F00, ci=0x79D903, act=7), id="CEREG=2 URC (MM)"),
    pytest.param("+CEREG: 2", False, R("+CEREG", 2), id="searching URC (MODEMS.md)"),
    pytest.param('+CEREG: 1,"002F","0012BEEF",7', False, R("+CEREG", 1, area=0x2F, ci=0x12BEEF, act=7), id="Nordic docs URC"),
    pytest.param(
        '+CEREG: 3,"002F","0012BEEF",7,0,15', False,
        R("+CEREG", 3, area=0x2F, ci=0x12BEEF, act=7, cause_type=0, reject_cause=15), id="denial EMM #15 n=3 (Nordic docs)",
    ),
    pytest.param(
        '+CEREG: 5,1,"002F","0012BEEF",9,,,"00100100","01000111"', True,
        R("+CEREG", 1, n=5, area=0x2F, ci=0x12BEEF, act=9, active_time="00100100", periodic_tau="01000111"),
        id="n=5 PSM timers NB-IoT (27.007 §10.1.22 syntax)",
    ),
    pytest.param('+CEREG: 5,90', True, R("+CEREG", 90, n=5), id="nRF91 stat 90 UICC failure"),
    pytest.param('+CEREG: 2,1,"2008","2B2078",9', True, R("+CEREG", 1, n=2, area=0x2008, ci=0x2B2078, act=9), id="BG77 NB-IoT (public rust fake modem)"),
]


@pytest.mark.parametrize("line, solicited, expected", REG_ROWS)
def test_registration(line, solicited, expected):
    assert P.parse_registration(line, solicited=solicited) == expected


@pytest.mark.parametrize("line, solicited, expected", [r for r in REG_ROWS if "Novatel" not in r.id])
def test_registration_shape_guess(line, solicited, expected):
    """Without the solicited hint the shape heuristic must agree with the explicit answer."""
    assert P.parse_registration(line) == expected


def test_registration_properties():
    r = P.parse_registration('+CEREG: 5,"002F","0012BEEF",7', solicited=False)
    assert r.registered and r.roaming and not r.denied
    assert P.parse_registration("+CEREG: 3", solicited=False).denied


@pytest.mark.parametrize("line", ["+CEREG: x,1", "+COPS: 0", "+CEREG: 1,1,1,1,1,1,1,1,1,1", "+CEREG:"])
def test_registration_garbage(line):
    with pytest.raises(ParseError):
        P.parse_registration(line, solicited=True)


N = P.NetworkInfo
COPS_ROWS = [
    pytest.param(
        '+COPS: (2,"","T-Mobile","31026",0),(2,"T - Mobile","T - Mobile","310260"),2),(1,"AT&T","AT&T","310410"),0)',
        [N(2, None, "T-Mobile", "31026", 0), N(2, "T - Mobile", "T - Mobile", "310260", 2), N(1, "AT&T", "AT&T", "310410", 0)],
        id="SE TM-506 unbalanced parentheses (MM)",
    ),
    pytest.param(
        '+COPS: (1,"T-Mobile US","TMO US","31026",0),(1,"Cingular","Cingular","310410",0),,(0, 1, 3),(0-2)',
        [N(1, "T-Mobile US", "TMO US", "31026", 0), N(1, "Cingular", "Cingular", "310410", 0)],
        id="Option GlobeTrotter 3G+ (MM)",
    ),
    pytest.param(
        '+COPS: (1,"T-Mobile","TMO","31026",0),(1,"AT&T","AT&T","310410",2),(1,"AT&T","AT&T","310410",0),,(0,1,2,3,4),)',
        [N(1, "T-Mobile", "TMO", "31026", 0), N(1, "AT&T", "AT&T", "310410", 2), N(1, "AT&T", "AT&T", "310410", 0)],
        id="Sierra AirCard 881 (MM)",
    ),
    pytest.param(
        '+COPS: (2,"T-Mobile","","310260"),(0,"Cingular Wireless","","310410")',
        [N(2, "T-Mobile", None, "310260", None), N(0, "Cingular Wireless", None, "310410", None)],
        id="Motorola C-series no AcT (MM)",
    ),
    pytest.param(
        '+COPS: (2,"AT&Tp","AT&T@","310410",0),(3,"","","31026",0),',
        [N(2, "AT&Tp", "AT&T@", "310410", 0), N(3, None, None, "31026", 0)],
        id="ZTE MF627 empty names (MM)",
    ),
    pytest.param(
        '+COPS: (2,"T - Mobile",,"31026"),(1,"Einstein PCS",,"31064"),(1,"Cingular",,"31041"),,(0,1,3),(0,2)',
        [N(2, "T - Mobile", None, "31026", None), N(1, "Einstein PCS", None, "31064", None), N(1, "Cingular", None, "31041", None)],
        id="Nokia N80 missing short name (MM)",
    ),
    pytest.param(
        [
            '+COPS: (0,"AT&T MicroCell","AT&T MicroCell","310410",2)',
            '+COPS: (1,"AT&T MicroCell","AT&T MicroCell","310410",0)',
            '+COPS: (1,"T-Mobile","TMO","31026",0)',
        ],
        [N(0, "AT&T MicroCell", "AT&T MicroCell", "310410", 2), N(1, "AT&T MicroCell", "AT&T MicroCell", "310410", 0), N(1, "T-Mobile", "TMO", "31026", 0)],
        id="Novatel XU870 multi-line (MM)",
    ),
    pytest.param(
        '+COPS: (2,"T-Mobile","TMO","31026",0),(1,"AT&T","AT&T","310410",2),,(0,1,2,3,4),(0,1,2)',
        [N(2, "T-Mobile", "TMO", "31026", 0), N(1, "AT&T", "AT&T", "310410", 2)],
        id="MODEMS.md sample",
    ),
    pytest.param("+COPS: (0,1,2,3),(1,2,3,4)", [], id="GSM invalid -> empty (MM)"),
    pytest.param('+COPS: (2,"Vodafone (UK)","voda UK","23415",7)', [N(2, "Vodafone (UK)", "voda UK", "23415", 7)], id="parentheses in name"),
]


@pytest.mark.parametrize("reply, expected", COPS_ROWS)
def test_cops_test(reply, expected):
    assert P.parse_cops_test(reply) == expected


def test_cops_test_garbage():
    with pytest.raises(ParseError, match=r"\+COPS=\?"):
        P.parse_cops_test(["+CSQ: 1,2"])


@pytest.mark.parametrize(
    "reply, expected",
    [
        pytest.param('+COPS: 0,2,"21401",7', P.OperatorSelection(0, 2, "21401", 7), id="MODEMS.md"),
        pytest.param("+COPS: 0", P.OperatorSelection(0), id="not registered"),
        pytest.param('+COPS: 1,0,"Telekom.de",9', P.OperatorSelection(1, 0, "Telekom.de", 9), id="long name NB-IoT"),
    ],
)
def test_cops_query(reply, expected):
    assert P.parse_cops_query(reply) == expected


def test_signal():
    csq = P.parse_csq("+CSQ: 17,99")
    assert (csq.rssi, csq.ber, csq.rssi_dbm) == (17, 99, -79)
    assert P.parse_csq("+CSQ: 99,99").rssi_dbm is None
    cesq = P.parse_cesq("+CESQ: 99,99,255,255,20,45")
    assert cesq.rsrp_dbm == -96 and cesq.rsrq_db == -10.0
    with pytest.raises(ParseError, match="rsrp"):
        P.parse_cesq("+CESQ: 99,99,255")


def test_cfun():
    assert P.parse_cfun("+CFUN: 1").fun == 1
    assert P.parse_cfun("+CFUN: 4,0") == P.Cfun(4, (0,))
    with pytest.raises(ParseError):
        P.parse_cfun("+CFUN: full")


def test_pdp():
    ctx = P.parse_cgdcont(['+CGDCONT: 1,"IP","internet","0.0.0.0",0,0', '+CGDCONT: 2,"IPV4V6","ims","",0,0'])
    assert ctx == [P.PdpContext(1, "IP", "internet", "0.0.0.0", 0, 0), P.PdpContext(2, "IPV4V6", "ims", None, 0, 0)]
    assert P.parse_cgact(["+CGACT: 1,1", "+CGACT: 2,0"]) == {1: True, 2: False}
    assert P.parse_cgatt("+CGATT: 1") is True
    with pytest.raises(ParseError):
        P.parse_cgatt("+CGATT: 7")
    assert P.parse_cgpaddr('+CGPADDR: 1,"10.45.0.2"') == [P.PdpAddress(1, ("10.45.0.2",))]
    assert P.parse_cgpaddr('+CGPADDR: 0,"10.0.0.1","2001:DB8::1"')[0].addresses == ("10.0.0.1", "2001:DB8::1")
    assert P.parse_cgpaddr("+CGPADDR: 1,10.45.0.2")[0].addresses == ("10.45.0.2",)


@pytest.mark.parametrize(
    "reply, kind, raw, value",
    [
        pytest.param("+CCHO: 1", "auto", "1", 1, id="27.007 §8.45"),
        pytest.param("+CCHO:2", "auto", "2", 2, id="no space"),
        pytest.param('+CCHO: "3"', "auto", "3", 3, id="quoted"),
        pytest.param("1", "auto", "1", 1, id="FM350 bare (lpac #179)"),
        pytest.param("+CCHO: 0000FFB3", "auto", "0000FFB3", 0xFFB3, id="Sierra hex handle (lpac #139)"),
        pytest.param("+CCHO: 10", "hex", "10", 16, id="hex typed by profile"),
        pytest.param("+CCHO: 0x1A", "auto", "0x1A", 26, id="0x prefix"),
    ],
)
def test_ccho(reply, kind, raw, value):
    assert P.parse_ccho([reply], kind) == P.SessionId(raw, value)


@pytest.mark.parametrize("reply", [["+CCHO: zz"], ["1", "2"], []])
def test_ccho_garbage(reply):
    with pytest.raises(ParseError):
        P.parse_ccho(reply)


@pytest.mark.parametrize(
    "reply, expected",
    [
        pytest.param('+CGLA: 46,"BF3E125A10890490320000000000002799732000199000"', "BF3E125A10890490320000000000002799732000199000", id="MODEMS.md EID"),
        pytest.param('+CGLA:4,"611A"', "611A", id="SIMCom no space (lpac PR #238)"),
        pytest.param("+CGLA: 4,9000", "9000", id="unquoted (cuttlefish test)"),
        pytest.param('+CGLA: 2,"9000"', "9000", id="length in bytes"),
    ],
)
def test_cgla(reply, expected):
    assert P.parse_cgla(reply) == bytes.fromhex(expected)


@pytest.mark.parametrize("reply", ['+CGLA: 8,"9000"', '+CGLA: 2,"9"', '+CGLA: 2,"ZZ"', "+CGLA: 4", '+CGLA: 2,"90"'])
def test_cgla_garbage(reply):
    with pytest.raises(ParseError, match=r"\+CGLA"):
        P.parse_cgla(reply)


def test_csim_and_crsm():
    assert P.parse_csim('+CSIM: 4,"6115"') == bytes.fromhex("6115")
    crsm = P.parse_crsm('+CRSM: 144,0,"98101430121181157002"')
    assert crsm.sw == 0x9000 and crsm.data.hex() == "98101430121181157002"
    assert P.parse_crsm("+CRSM: 106,130").data == b""


def test_identity():
    assert P.parse_info_text(["Quectel"], "+CGMI:") == "Quectel"
    assert P.parse_info_text(["+CGMM: nRF9160-SICA"], "+CGMM:") == "nRF9160-SICA"
    assert P.parse_cgsn(["868446031757533"]) == "868446031757533"
    assert P.parse_cgsn(['+CGSN: "352656100123456"']) == "352656100123456"
    with pytest.raises(ParseError, match="IMEI"):
        P.parse_cgsn(["ERROR-ish"])
    ati = P.parse_ati(["Quectel", "BG96", "Revision: BG96MAR02A07M1G"])
    assert (ati.manufacturer, ati.model, ati.revision) == ("Quectel", "BG96", "BG96MAR02A07M1G")
    ati = P.parse_ati(["Manufacturer: u-blox", "Model: SARA-R510M8S", "Revision: 03.15"])
    assert (ati.manufacturer, ati.model, ati.revision) == ("u-blox", "SARA-R510M8S", "03.15")


def test_split_fields_quotes():
    assert P.split_fields('1,"a,b", 3 ,') == ["1", '"a,b"', "3", ""]
