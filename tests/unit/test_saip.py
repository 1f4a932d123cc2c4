"""SAIP profile packages: ICCID/IMSI codecs, build/read round trips, public sample, padding, errors."""

from __future__ import annotations

import pytest

from sgp32hil.harness.asn1 import decode, iter_tlvs
from sgp32hil.harness.saip import (
    OID_MF,
    OID_USIM,
    ProfileError,
    apn_decode,
    apn_encode,
    bcd_to_iccid,
    iccid_to_bcd,
    iccid_with_luhn,
    imsi_from_ef,
    imsi_to_ef,
    luhn_digit,
    make_profile,
    profile_elements,
    read_profile,
    validate_iccid,
)

# First four PEs (header, mf, pukCodes, pinCodes) of the SIMalliance sample profile, as carried in the
# plaintext of osmocom/pysim tests/unittests/test_esim_bsp.py (BSP_Test_mode51 segment0; values only).
SIMALLIANCE_SAMPLE_HEAD = bytes.fromhex(
    "a048800102810101821a53494d616c6c69616e63652053616d706c652050726f66696c65830a89000123456789012341a506810084008b00a610060667810f010201060667810f010204b08201f8a0058000810101810667810f010201a207a105c60301020aa305a1038b010fa40c830a98001032547698103214a527a109820442210026800198831a61184f10a0000000871002ff33ff01890000010050045553494da682019ea10a8204422100258002022b831b8001019000800102a406830101950108800158a40683010a95010882010a8316800101a40683010195010880015aa40683010a95010882010f830b80015ba40683010a95010882011a830a800101900080015a970082011b8316800103a406830101950108800158a40683010a95010882010f8316800111a40683010195010880014aa40683010a95010882010f8321800103a406830101950108800158a40683010a950108840132a4068301019501088201048321800101a406830101950108800102a406830181950108800158a40683010a950108820104831b800101900080011aa406830101950108800140a40683010a95010882010a8310800101900080015aa40683010a95010882011583158001019000800118a40683010a95010880014297008201108310800101a40683010195010880015a97008201158316800113a406830101950108800148a40683010a95010882010f830b80015ea40683010a95010882011a83258001019000800102a010a406830101950108a406830102950108800158a40683010a950108a33fa0058000810102a13630118001018108303030303030303082020099300d800102810831323334353637383012800200818108313233343536373882020088a241a0058000810103a138a0363010800101810831323334ffffffff8201013010800102810830303030ffffffff820102301080010a810835363738ffffffff830101"
)

ICCID = "89000123456789012341"
IMSI = "001010123456789"
K = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
OPC = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")


# --- ICCID ---------------------------------------------------------------------------------------------


def test_luhn_known_values():
    assert luhn_digit("7992739871") == "3"
    assert iccid_with_luhn("8900012345678901234") == ICCID
    assert iccid_with_luhn("891004234814455936") == "8910042348144559361"
    assert validate_iccid(ICCID) == ICCID


def test_iccid_bcd_known_answer():
    assert iccid_to_bcd(ICCID) == bytes.fromhex("98001032547698103214")
    assert bcd_to_iccid(bytes.fromhex("98001032547698103214")) == ICCID


def test_iccid_19_digits_padded_with_f():
    iccid = iccid_with_luhn("891004234814455936")
    assert iccid_to_bcd(iccid) == bytes.fromhex("980140328441549563F1")
    assert iccid_to_bcd(iccid)[-1] == 0xF1
    assert bcd_to_iccid(iccid_to_bcd(iccid)) == iccid


@pytest.mark.parametrize(
    "iccid, fragment",
    [
        ("8900012345678901234", "Luhn"),
        ("89000123456789012342", "Luhn"),
        ("890001234567890123", "18 digits"),
        ("890001234567890123411", "21 digits"),
        ("8900012345678901234A", "decimal digits"),
        ("99000123456789012349", "89"),
    ],
)
def test_iccid_errors_name_the_input(iccid, fragment):
    with pytest.raises(ProfileError) as err:
        iccid_to_bcd(iccid)
    assert iccid in str(err.value) and fragment in str(err.value)


def test_iccid_bcd_errors():
    with pytest.raises(ProfileError):
        bcd_to_iccid(bytes(9))
    with pytest.raises(ProfileError):
        bcd_to_iccid(bytes.fromhex("980010325476981032A4"))
    with pytest.raises(ProfileError, match="Luhn"):
        bcd_to_iccid(bytes.fromhex("98001032547698103224"))
    with pytest.raises(ProfileError):
        iccid_with_luhn("89000123")


# --- IMSI ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "imsi, ef",
    [
        ("001010123456789", "080910101032547698"),
        ("001010000000001", "080910100000000010"),
        ("00101012345678", "0801101010325476F8"),
        ("262011234", "052926102143FFFFFF"),
    ],
)
def test_imsi_ef_known_answers(imsi, ef):
    assert imsi_to_ef(imsi).hex().upper() == ef.upper()
    assert imsi_from_ef(bytes.fromhex(ef)) == imsi


@pytest.mark.parametrize("imsi", ["00101", "0010101234567890", "00101012345678X", ""])
def test_imsi_errors_name_the_input(imsi):
    with pytest.raises(ProfileError) as err:
        imsi_to_ef(imsi)
    assert repr(imsi) in str(err.value)


def test_imsi_from_ef_errors():
    for bad in ("0809101010325476", "000910101032547698", "083510101032547698"):
        with pytest.raises(ProfileError):
            imsi_from_ef(bytes.fromhex(bad))


# --- APN -----------------------------------------------------------------------------------------------


def test_apn_label_format():
    assert apn_encode("internet.test") == b"\x08internet\x04test"
    assert apn_decode(apn_encode("iot.1nce.net")) == "iot.1nce.net"
    for bad in ("", "a..b", "-bad", "sp ace", "x" * 64, ".".join(["abcdefghij"] * 10)):
        with pytest.raises(ProfileError):
            apn_encode(bad)


# --- public sample -------------------------------------------------------------------------------------


def test_simalliance_sample_decodes_with_our_helpers():
    pes = profile_elements(SIMALLIANCE_SAMPLE_HEAD)
    assert [kind for kind, _ in pes] == ["header", "mf", "pukCodes", "pinCodes"]
    header, mf = pes[0][1], pes[1][1]
    assert header["iccid"] == bytes.fromhex(ICCID)
    assert header["eUICC-Mandatory-GFSTEList"] == [OID_MF, OID_USIM]
    ef_iccid = [v for k, v in mf["ef-iccid"] if k == "fillFileContent"][0]
    assert bcd_to_iccid(ef_iccid) == ICCID


def test_sample_head_is_not_a_complete_package():
    with pytest.raises(ProfileError, match="end"):
        read_profile(SIMALLIANCE_SAMPLE_HEAD)


# --- build and read ------------------------------------------------------------------------------------


def test_round_trip_with_apn():
    der = make_profile(ICCID, IMSI, apn="internet.test", name="Lab 1", spn="HIL Net", key=K, opc=OPC)
    summary = read_profile(der)
    assert summary.iccid == ICCID and summary.imsi == IMSI
    assert summary.name == "Lab 1" and summary.spn == "HIL Net" and summary.apn == "internet.test"
    assert summary.key == K and summary.opc == OPC
    assert summary.size == len(der)
    assert summary.pe_types == ["header", "mf", "pukCodes", "pinCodes", "usim", "opt-usim", "akaParameter", "end"]


def test_round_trip_without_apn_and_random_keys():
    a, b = make_profile(ICCID, IMSI), make_profile(ICCID, IMSI)
    sa, sb = read_profile(a), read_profile(b)
    assert sa.apn is None and "opt-usim" not in sa.pe_types
    assert len(sa.key) == len(sa.opc) == 16 and sa.key != sb.key
    assert make_profile(ICCID, IMSI, key=K.hex(), opc=OPC) == make_profile(ICCID, IMSI, key=K, opc=OPC)


def test_every_pe_is_canonical_der():
    der = make_profile(ICCID, IMSI, apn="internet.test", key=K, opc=OPC)
    from sgp32hil.harness.asn1 import encode

    for tlv in iter_tlvs(der):
        assert encode("ProfileElement", decode("ProfileElement", tlv.raw)) == tlv.raw


def test_file_contents_follow_31102():
    der = make_profile(ICCID, IMSI, apn="internet.test", key=K, opc=OPC, mnc_len=3)
    pes = dict(profile_elements(der))
    header, usim, mf = pes["header"], pes["usim"], pes["mf"]

    def content(file):
        return b"".join(v for k, v in file if k == "fillFileContent")

    assert header["iccid"] == bytes.fromhex(ICCID)
    assert content(mf["ef-iccid"]) == iccid_to_bcd(ICCID)
    assert content(usim["ef-imsi"]) == bytes.fromhex("080910101032547698")
    assert content(usim["ef-ad"]) == bytes.fromhex("00000003")
    assert content(usim["ef-acc"]) == bytes.fromhex("0200")
    ust = content(usim["ef-ust"])
    assert len(ust) == 17 and ust[2] & 0x04 and ust[4] & 0x04
    assert content(usim["ef-spn"])[:10] == b"\x01sgp32-hil"
    acl = content(pes["opt-usim"]["ef-acl"])
    assert len(acl) == 101 and acl[:3] == bytes([1, 0xDD, 14])
    dir_record = content(mf["ef-dir"])
    assert dir_record[:4] == bytes.fromhex("61184F10") and b"USIM" in dir_record
    aka = pes["akaParameter"]["algoConfiguration"]
    assert aka[0] == "algoParameter" and aka[1]["algorithmID"] == 1


def test_pe_identifications_are_unique():
    der = make_profile(ICCID, IMSI, apn="a.b", pad_to=5000)
    idents = []
    for _kind, value in profile_elements(der)[1:]:
        header = next(v for k, v in value.items() if k.endswith("-header") or k.endswith("-Header"))
        idents.append(header["identification"])
    assert len(idents) == len(set(idents)) and idents == sorted(idents)


@pytest.mark.parametrize("target", [3000, 10_000, 25_000])
def test_padding_reaches_target(target):
    der = make_profile(ICCID, IMSI, key=K, opc=OPC, pad_to=target)
    summary = read_profile(der)
    assert target <= len(der) < target + 400
    assert "genericFileManagement" in summary.pe_types and summary.imsi == IMSI


def test_padding_not_added_when_already_large_enough():
    plain = make_profile(ICCID, IMSI, key=K, opc=OPC)
    assert make_profile(ICCID, IMSI, key=K, opc=OPC, pad_to=100) == plain


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"iccid": "89000123456789012342"}, "Luhn"),
        ({"imsi": "0010101234567890"}, "IMSI"),
        ({"apn": "bad apn"}, "APN"),
        ({"spn": "x" * 17}, "SPN"),
        ({"spn": "caf\u00e9"}, "SPN"),
        ({"key": b"\x00" * 15}, "Milenage K"),
        ({"opc": "zz"}, "Milenage OPc"),
        ({"name": ""}, "profile name"),
        ({"mnc_len": 4}, "MNC length"),
    ],
)
def test_make_profile_errors(kwargs, fragment):
    args = {"iccid": ICCID, "imsi": IMSI} | kwargs
    with pytest.raises(ProfileError, match=fragment):
        make_profile(**args)


def test_read_profile_rejects_garbage():
    der = make_profile(ICCID, IMSI, key=K, opc=OPC)
    for bad in (b"", b"\x30\x03\x02\x01", der[:-3], der + b"\x00", b"\xbf\x7f\x00"):
        with pytest.raises(ProfileError):
            read_profile(bad)
    pes = list(iter_tlvs(der))
    with pytest.raises(ProfileError, match="header"):
        read_profile(b"".join(t.raw for t in pes[1:]))


def test_read_profile_detects_iccid_mismatch():
    other = iccid_with_luhn("8900012345678901235")
    a = list(iter_tlvs(make_profile(ICCID, IMSI, key=K, opc=OPC)))
    b = list(iter_tlvs(make_profile(other, IMSI, key=K, opc=OPC)))
    mixed = a[0].raw + b"".join(t.raw for t in b[1:])
    with pytest.raises(ProfileError, match="differs"):
        read_profile(mixed)
