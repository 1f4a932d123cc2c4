"""Activation Code parsing (SGP.22 §4.1) and the SGP.32 ProfileDownloadTrigger form."""

from __future__ import annotations

import pytest

from sgp32hil.harness.activation import ActivationCode, ActivationCodeError, from_profile_download_data, parse
from sgp32hil.harness.asn1 import decode, encode

GOOD = [
    ("LPA:1$SMDP.GSMA.COM$04386-AGYFT-A74Y8-3F815",
     ActivationCode("SMDP.GSMA.COM", "04386-AGYFT-A74Y8-3F815")),
    ("1$smdp.example.com$04386-AGYFT-A74Y8-3F815",
     ActivationCode("smdp.example.com", "04386-AGYFT-A74Y8-3F815")),
    ("LPA:1$smdp.example.com$MID$1.3.6.1.4.1.31746",
     ActivationCode("smdp.example.com", "MID", "1.3.6.1.4.1.31746")),
    ("LPA:1$smdp.example.com$MID$1.3.6.1.4.1.31746$1",
     ActivationCode("smdp.example.com", "MID", "1.3.6.1.4.1.31746", True)),
    ("LPA:1$smdp.example.com$MID$$1", ActivationCode("smdp.example.com", "MID", None, True)),
    ("LPA:1$smdp.example.com$MID$$", ActivationCode("smdp.example.com", "MID")),
    ("LPA:1$127.0.0.1:8443$TEST-0001", ActivationCode("127.0.0.1:8443", "TEST-0001")),
    ("LPA:1$localhost:8443$A", ActivationCode("localhost:8443", "A")),
    ("LPA:1$[::1]:8443$A", ActivationCode("[::1]:8443", "A")),
    ("LPA:1$smdp.example.com.$A", ActivationCode("smdp.example.com.", "A")),
    ("LPA:1$smdp.example.com$", ActivationCode("smdp.example.com", "")),
    ("lpa:1$smdp.example.com$A", ActivationCode("smdp.example.com", "A")),
]

BAD = [
    ("", "format", "empty"),
    ("LPA:", "format", "empty"),
    (" LPA:1$a.com$A", "format", "white space"),
    ("LPA:2$smdp.example.com$A", "AC_Format", "'2'"),
    ("LPA:$smdp.example.com$A", "AC_Format", "''"),
    ("LPA:1$smdp.example.com", "format", "2 field(s)"),
    ("LPA:1", "format", "1 field(s)"),
    ("LPA:1$a.com$A$1.2.3$1$X", "format", "6 fields"),
    ("LPA:1$$A", "SM-DP+ Address", "empty"),
    ("LPA:1$https://smdp.example.com$A", "SM-DP+ Address", "URL"),
    ("LPA:1$smdp.example.com/path$A", "SM-DP+ Address", "URL"),
    ("LPA:1$smdp example.com$A", "SM-DP+ Address", "white space"),
    ("LPA:1$smdp..example.com$A", "SM-DP+ Address", "invalid label"),
    ("LPA:1$-smdp.example.com$A", "SM-DP+ Address", "invalid label"),
    ("LPA:1$smdp_1.example.com$A", "SM-DP+ Address", "invalid label"),
    ("LPA:1$smdp.example.com:0$A", "SM-DP+ Address", "port '0'"),
    ("LPA:1$smdp.example.com:https$A", "SM-DP+ Address", "port 'https'"),
    ("LPA:1$[::1$A", "SM-DP+ Address", "unclosed"),
    ("LPA:1$smdp.example.com$abc-123", "MatchingID", "'a', 'b', 'c'"),
    ("LPA:1$smdp.example.com$AB C", "MatchingID", "' '"),
    ("LPA:1$smdp.example.com$AB_C", "MatchingID", "'_'"),
    ("LPA:1$smdp.example.com$ÄB", "MatchingID", "'Ä'"),
    ("LPA:1$smdp.example.com$A$1.3.6.", "SM-DP+ OID", "dotted"),
    ("LPA:1$smdp.example.com$A$3.1", "SM-DP+ OID", "dotted"),
    ("LPA:1$smdp.example.com$A$1", "SM-DP+ OID", "dotted"),
    ("LPA:1$smdp.example.com$A$1.01", "SM-DP+ OID", "dotted"),
    ("LPA:1$smdp.example.com$A$1.2$0", "Confirmation Code Required Flag", "'0'"),
    ("LPA:1$smdp.example.com$A$1.2$yes", "Confirmation Code Required Flag", "'yes'"),
    ("LPA:1$smdp.example.com$" + "A" * 240, "format", "at most 255"),
]


@pytest.mark.parametrize("text,expected", GOOD)
def test_good_activation_codes(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text,field,words", BAD)
def test_bad_activation_codes_name_input_field_and_expectation(text, field, words):
    with pytest.raises(ActivationCodeError) as info:
        parse(text)
    err = info.value
    assert err.field == field
    assert words in str(err)
    assert "SGP.22 §4.1" in str(err)
    assert repr(text[:20])[1:-1][:10] in str(err)


def test_host_port_and_canonical_form():
    ac = parse("LPA:1$127.0.0.1:8443$TEST-0001$$1")
    assert (ac.host, ac.port) == ("127.0.0.1", 8443)
    assert parse("1$[::1]:9000$A").host == "::1"
    assert parse("1$smdp.example.com$A").port is None
    assert str(ac) == "LPA:1$127.0.0.1:8443$TEST-0001$$1"
    assert ac.to_string() == "1$127.0.0.1:8443$TEST-0001$$1"
    assert str(parse("1$a.com$A$1.2")) == "LPA:1$a.com$A$1.2"
    for _text, expected in GOOD:
        assert parse(str(expected)) == expected


def test_qr_prefix_can_be_refused():
    with pytest.raises(ActivationCodeError, match="QR code prefix"):
        parse("LPA:1$a.com$A", allow_qr_prefix=False)
    assert parse("1$a.com$A", allow_qr_prefix=False).matching_id == "A"


def test_profile_download_trigger_activation_code():
    der = encode("ProfileDownloadTriggerRequest",
                 {"profileDownloadData": ("activationCode", "1$smdp.example.com$TRIGGER-1$$1")})
    value = decode("ProfileDownloadTriggerRequest", der)
    ac = from_profile_download_data(value["profileDownloadData"])
    assert ac == ActivationCode("smdp.example.com", "TRIGGER-1", None, True)
    with pytest.raises(ValueError, match="contactDefaultSmdp"):
        from_profile_download_data(("contactDefaultSmdp", None))
    with pytest.raises(ActivationCodeError, match="empty"):
        from_profile_download_data(("activationCode", ""))
    with pytest.raises(ActivationCodeError, match="QR code prefix"):
        from_profile_download_data(("activationCode", "LPA:1$a.com$A"))
    with pytest.raises(TypeError):
        from_profile_download_data("1$a.com$A")
