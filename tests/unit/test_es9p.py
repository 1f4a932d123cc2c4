"""ES9+ JSON binding: strict parsing and serialising (SGP.22 §6.5)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgp32hil.harness import es9p
from sgp32hil.harness.es9p import Es9Error


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CHALLENGE = bytes(range(16))
GOOD = {
    "initiateAuthentication": {"euiccChallenge": b64(CHALLENGE), "euiccInfo1": b64(b"\xbf\x20\x00"), "smdpAddress": "a.b"},
    "authenticateClient": {"transactionId": "0A0B", "authenticateServerResponse": b64(b"\xbf\x38\x00")},
    "getBoundProfilePackage": {"transactionId": "0A0B", "prepareDownloadResponse": b64(b"\xbf\x21\x00")},
    "handleNotification": {"pendingNotification": b64(b"\xbf\x37\x00")},
    "cancelSession": {"transactionId": "0A0B", "cancelSessionResponse": b64(b"\xbf\x41\x00")},
}


def body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("function", sorted(GOOD))
def test_good_requests_round_trip(function):
    req = es9p.parse_request(function, body(GOOD[function]))
    assert json.loads(es9p.request_json(req)) == GOOD[function]


def test_initiate_authentication_fields():
    req = es9p.parse_request("initiateAuthentication", body(GOOD["initiateAuthentication"]))
    assert req.euicc_challenge == CHALLENGE
    assert req.euicc_info1 == b"\xbf\x20\x00"
    assert req.smdp_address == "a.b"
    assert req.header is None


def test_request_header_optional_and_strict():
    obj = dict(GOOD["cancelSession"], header={"functionRequesterIdentifier": "x", "functionCallIdentifier": "y"})
    req = es9p.parse_request("cancelSession", body(obj))
    assert req.header == es9p.RequestHeader("x", "y")
    obj["header"]["extra"] = 1
    with pytest.raises(Es9Error) as exc:
        es9p.parse_request("cancelSession", body(obj))
    assert exc.value.code == es9p.INVALID


def _mutate(function, **changes):
    obj = dict(GOOD[function])
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return body(obj)


BAD = [
    ("initiateAuthentication", b"{", es9p.INVALID),
    ("initiateAuthentication", b"[]", es9p.INVALID),
    ("initiateAuthentication", b"\xff\xfe", es9p.INVALID),
    ("initiateAuthentication", b'{"a":1,"a":2}', es9p.INVALID),
    ("initiateAuthentication", b'{"x": NaN}', es9p.INVALID),
    ("initiateAuthentication", b"[" * 100000, es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", smdpAddress=...), es9p.MANDATORY_ELEMENT_MISSING),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccInfo1=...), es9p.MANDATORY_ELEMENT_MISSING),
    ("initiateAuthentication", _mutate("initiateAuthentication", extra="x"), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccInfo1="@@@@"), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccInfo1="QUJD"[:3]), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccInfo1="QUJ="), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccInfo1=""), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccInfo1=5), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", smdpAddress=["a"]), es9p.INVALID),
    ("initiateAuthentication", _mutate("initiateAuthentication", euiccChallenge=b64(b"short")), es9p.INVALID),
    ("authenticateClient", _mutate("authenticateClient", transactionId="XYZ0"), es9p.INVALID),
    ("authenticateClient", _mutate("authenticateClient", transactionId="ABC"), es9p.INVALID),
    ("authenticateClient", _mutate("authenticateClient", transactionId="00" * 17), es9p.INVALID),
    ("authenticateClient", _mutate("authenticateClient", transactionId=12), es9p.INVALID),
    ("authenticateClient", _mutate("authenticateClient", transactionId=...), es9p.MANDATORY_ELEMENT_MISSING),
    ("getBoundProfilePackage", _mutate("getBoundProfilePackage", prepareDownloadResponse=None), es9p.INVALID),
    ("handleNotification", b"{}", es9p.MANDATORY_ELEMENT_MISSING),
    ("cancelSession", _mutate("cancelSession", header="x"), es9p.INVALID),
    ("noSuchFunction", b"{}", es9p.UNSUPPORTED),
]


@pytest.mark.parametrize(("function", "raw", "code"), BAD)
def test_bad_requests(function, raw, code):
    with pytest.raises(Es9Error) as exc:
        es9p.parse_request(function, raw)
    assert exc.value.code == code
    assert exc.value.status == es9p.Status.FAILED


def test_response_emits_exact_members():
    resp = es9p.InitiateAuthenticationResponse(b"\x01\xab", b"s1", b"sig", b"pk", b"cert")
    obj = json.loads(es9p.response_json(resp))
    assert list(obj) == [
        "header",
        "transactionId",
        "serverSigned1",
        "serverSignature1",
        "euiccCiPKIdToBeUsed",
        "serverCertificate",
    ]
    assert obj["header"] == {"functionExecutionStatus": {"status": "Executed-Success"}}
    assert obj["transactionId"] == "01AB"
    assert es9p.parse_response("initiateAuthentication", es9p.response_json(resp)) == resp


def test_cancel_session_response_is_header_only():
    raw = es9p.response_json(es9p.CancelSessionResponse())
    assert json.loads(raw) == {"header": {"functionExecutionStatus": {"status": "Executed-Success"}}}
    assert es9p.parse_response("cancelSession", raw) == es9p.CancelSessionResponse()
    assert es9p.parse_response("handleNotification", b"") is None


def test_error_response_round_trip():
    err = Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "no such session")
    raw = es9p.response_json(err)
    assert json.loads(raw) == {
        "header": {
            "functionExecutionStatus": {
                "status": "Failed",
                "statusCodeData": {"subjectCode": "8.10.1", "reasonCode": "3.9", "message": "no such session"},
            }
        }
    }
    with pytest.raises(Es9Error) as exc:
        es9p.parse_response("authenticateClient", raw)
    assert exc.value.code == es9p.TRANSACTION_ID_UNKNOWN
    assert exc.value.message == "no such session"


def test_response_parsing_is_strict():
    resp = json.loads(es9p.response_json(es9p.GetBoundProfilePackageResponse(b"\x01", b"\xbf\x36\x00")))
    resp["extra"] = "x"
    with pytest.raises(Es9Error):
        es9p.parse_response("getBoundProfilePackage", body(resp))
    with pytest.raises(Es9Error) as exc:
        es9p.parse_response("getBoundProfilePackage", b'{"transactionId":"01"}')
    assert exc.value.code == es9p.MANDATORY_ELEMENT_MISSING
    bad_status = {"header": {"functionExecutionStatus": {"status": "Done"}}}
    with pytest.raises(Es9Error):
        es9p.parse_response("cancelSession", body(bad_status))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("gsma/rsp/v2.1.0", True),
        ("gsma/rsp/v2.2.2", True),
        ("gsma/rsp/v2.5.0", True),
        ("gsma/rsp/v3.0.0", False),
        ("gsma/rsp/v2", False),
        ("", False),
        (None, False),
    ],
)
def test_admin_protocol(value, ok):
    assert es9p.admin_protocol_accepted(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/json;charset=UTF-8", True),
        ("application/json; charset=utf-8", True),
        ("application/json", True),
        ("application/json;charset=ISO-8859-1", False),
        ("text/plain", False),
        (None, False),
    ],
)
def test_content_type(value, ok):
    assert es9p.content_type_accepted(value) is ok


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(function=st.sampled_from(sorted(GOOD)), raw=st.binary(max_size=200) | json_values.map(lambda v: body(v)))
def test_fuzz_only_es9error(function, raw):
    try:
        es9p.parse_request(function, raw)
    except Es9Error as exc:
        assert exc.subject_code and exc.reason_code
