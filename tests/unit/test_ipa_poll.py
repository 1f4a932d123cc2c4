"""The host IPAd poll cycle (SGP.32 v1.2 §3.1.1.1) against a fake eIM (httpx MockTransport answering
DER ESipa messages) and the in-process software eUICC: package retrieval, IpaEuiccData, eUICC package
results forwarded byte for byte with ePRAndNotifications, acknowledgements, notification delivery,
REFRESH survival, invalid/unknown packages and bad eIM replies."""

from __future__ import annotations

from contextlib import contextmanager

import httpx
import pytest

from sgp32hil.drivers.apdu.inprocess import InProcessTransport
from sgp32hil.drivers.es10.client import Es10Client
from sgp32hil.drivers.es10.types import iccid_to_bcd
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc
from sgp32hil.harness import pki
from sgp32hil.harness.asn1 import decode, encode, parse_single
from sgp32hil.harness.ipa import Ipa
from sgp32hil.harness.ipa.esipa_client import ADMIN_PROTOCOL, CONTENT_TYPE, ESIPA_PATH, USER_AGENT, tlv
from sgp32hil.harness.ipa.poll import _split_tags, encode_plmn

FROM_IPA = "EsipaMessageFromIpaToEim"
FROM_EIM = "EsipaMessageFromEimToIpa"
TID = bytes.fromhex("0102030405060708")
NO_PACKAGE = encode(FROM_EIM, ("getEimPackageResponse", ("eimPackageError", 1)))


@pytest.fixture(scope="module")
def pkiset(tmp_path_factory):
    return pki.generate(tmp_path_factory.mktemp("pki"), curves=("nist",))


@pytest.fixture
def euicc(pkiset, tmp_path):
    with SoftEuicc.open(tmp_path / "euicc", pkiset) as card:
        yield card


class FakeEim:
    """ESipa responder: hands out ``packages`` (DER GetEimPackageResponse), acknowledges results."""

    def __init__(self, packages=(), *, ack=None):
        self.packages = list(packages)
        self.requests: list[httpx.Request] = []
        self.received: list[tuple[str, object, bytes]] = []
        self.ack = ack  # callable(decoded ProvideEimPackageResult) -> list[int]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        alt, value = decode(FROM_IPA, request.content)
        self.received.append((alt, value, request.content))
        if alt == "getEimPackageRequest":
            body = self.packages.pop(0) if self.packages else NO_PACKAGE
            if isinstance(body, httpx.Response):
                return body
            return httpx.Response(200, content=body, headers={"Content-Type": CONTENT_TYPE})
        if alt == "provideEimPackageResult":
            seqs = self.ack(value) if self.ack else []
            body = encode(FROM_EIM, ("provideEimPackageResultResponse", ("eimAcknowledgements", seqs)))
            return httpx.Response(200, content=body, headers={"Content-Type": CONTENT_TYPE})
        if alt == "handleNotificationEsipa":
            return httpx.Response(204)
        return httpx.Response(500)

    def of(self, alt: str) -> list:
        return [(v, raw) for a, v, raw in self.received if a == alt]


@contextmanager
def card_client(euicc):
    transport = InProcessTransport(euicc.card)
    try:
        with Es10Client(transport) as client:
            yield client
    finally:
        transport.close()


def make_ipa(euicc, eim, **kwargs) -> Ipa:
    kwargs.setdefault("eim_url", "https://eim.test:8443")
    return Ipa(lambda: InProcessTransport(euicc.card), http_transport=httpx.MockTransport(eim), **kwargs)


def eim_package(kind: str, value) -> bytes:
    return encode(FROM_EIM, ("getEimPackageResponse", (kind, value)))


# --- helpers -----------------------------------------------------------------------------------------


def test_tag_list_split_and_plmn():
    assert _split_tags(bytes.fromhex("BF20A0815C")) == [b"\xbf\x20", b"\xa0", b"\x81", b"\x5c"]
    with pytest.raises(ValueError):
        _split_tags(b"\xbf")
    assert encode_plmn("00101") == bytes.fromhex("00F110")
    assert encode_plmn("310410") == bytes.fromhex("130014")


# --- retrieval ---------------------------------------------------------------------------------------


def test_empty_poll_headers_and_state_change(euicc):
    eim = FakeEim()
    result = make_ipa(euicc, eim, rplmn="00101").poll(notify_state_change=True, state_change_cause="fallback")
    assert result.ok, result.error
    assert result.eid == euicc.eid and result.packages == []
    assert result.eim_url == "https://eim.test:8443/gsma/rsp2/asn1"
    req = eim.requests[-1]
    assert req.method == "POST" and req.url.path == ESIPA_PATH
    assert req.headers["content-type"] == CONTENT_TYPE
    assert req.headers["x-admin-protocol"] == ADMIN_PROTOCOL
    assert req.headers["user-agent"] == USER_AGENT
    (get, raw), = eim.of("getEimPackageRequest")
    assert raw[:2] == b"\xbf\x4f"
    assert get == {"eidValue": bytes.fromhex(euicc.eid), "notifyStateChange": None, "stateChangeCause": 1,
                   "rPLMN": bytes.fromhex("00F110")}
    assert [e.function for e in result.esipa] == ["GetEimPackage"]
    assert "GetEimPackage HTTP 200" in result.esipa[0].render() and "BF4F" in result.render_esipa()
    assert result.to_dict()["packages"] == []
    assert any(e.function == "GetEimConfigurationData" for e in result.es10)


def test_card_eim_fqdn_used_without_override(euicc):
    eim = FakeEim()
    result = make_ipa(euicc, eim, eim_url=None, insecure=True).poll()
    assert result.ok, result.error
    assert result.eim_id == "sgp32hil-eim"
    assert str(eim.requests[0].url) == "https://127.0.0.1:8444/gsma/rsp2/asn1"


# --- IpaEuiccData ------------------------------------------------------------------------------------


def test_ipa_euicc_data(euicc):
    tags = bytes.fromhex("BF20BF22A5A6A8A983A0A2")
    eim = FakeEim([eim_package("ipaEuiccDataRequest", {"tagList": tags, "eimTransactionId": TID})])
    result = make_ipa(euicc, eim).poll()
    assert result.ok, result.error
    (provided, raw), = eim.of("provideEimPackageResult")
    kind, response = provided["eimPackageResult"]
    assert kind == "ipaEuiccDataResponse" and response[0] == "ipaEuiccData"
    data = response[1]
    assert set(data) >= {"euiccInfo1", "euiccInfo2", "eumCertificate", "euiccCertificate", "ipaCapabilities",
                         "deviceInfo", "rootSmdsAddress", "notificationsList", "euiccPackageResultList"}
    assert data["eimTransactionId"] == TID
    assert provided["eidValue"] == bytes.fromhex(euicc.eid)
    with card_client(euicc) as c:
        info1 = c.call("GetEUICCInfo1", "GetEuiccInfo1Request", {}, "EUICCInfo1")[1]
        certs = c.get_certs()
    assert info1 in raw  # the eUICC's bytes, not a re-encoding
    assert certs.euicc_certificate[4:] in raw
    assert encode(FROM_IPA, ("provideEimPackageResult", provided)) == raw  # DER, members in ASN.1 order
    assert result.packages[0].kind == "ipaEuiccDataRequest" and result.packages[0].eim_transaction_id == TID.hex().upper()


def test_ipa_euicc_data_incorrect_tag_list(euicc):
    eim = FakeEim([eim_package("ipaEuiccDataRequest", {"tagList": bytes.fromhex("BF20DF7F"), "eimTransactionId": TID})])
    result = make_ipa(euicc, eim).poll()
    (provided, _), = eim.of("provideEimPackageResult")
    assert provided["eimPackageResult"] == ("ipaEuiccDataResponse", ("ipaEuiccDataResponseError", {
        "eimTransactionId": TID, "ipaEuiccDataErrorCode": 1}))
    assert not result.ok and "incorrectTagList" in result.packages[0].error


# --- eUICC packages ----------------------------------------------------------------------------------


def _package_request(eid: str, counter: int = 1) -> bytes:
    signed = {"eimId": "sgp32hil-eim", "eidValue": bytes.fromhex(eid), "counterValue": counter,
              "eimTransactionId": TID, "euiccPackage": ("psmoList", [("enable", {"iccid": bytes(10), "rollbackFlag": None})])}
    return encode("EuiccPackageRequest", {"euiccPackageSigned": signed, "eimSignature": b"\x00" * 64})


def _result(seq: int, counter: int = 1) -> bytes:
    return encode("EuiccPackageResult", ("euiccPackageResultSigned", {
        "euiccPackageResultDataSigned": {"eimId": "sgp32hil-eim", "counterValue": counter, "eimTransactionId": TID,
                                         "seqNumber": seq, "euiccResult": [("enableResult", 0)]},
        "euiccSignEPR": b"\x5f\x37\x40" + b"\x22" * 64}))


def _install_load_euicc_package(euicc, answer):
    """Replace the eUICC's LoadEuiccPackage (BF51) handler by ``answer(request_der) -> result DER``."""
    import dataclasses

    tag = b"\xbf\x51"
    fn = euicc.isdr.functions[tag]
    euicc.isdr.functions[tag] = dataclasses.replace(fn, handler=answer, raw=True, response=None)


def _pending(euicc) -> list[int]:
    with card_client(euicc) as c:
        return [n.seq_number for n in c.retrieve_notifications_list()]


def _make_notification(euicc) -> int:
    with card_client(euicc) as c:
        iccid = c.get_profiles_info()[0].iccid
        c.disable_profile(iccid, refresh=False)
    (seq,) = _pending(euicc)
    return seq


def _disable_bootstrap(euicc) -> None:
    """Inside a fake LoadEuiccPackage: a profile state change that leaves a pending notification."""
    iccid = euicc.state.profiles[0].iccid
    command = encode("DisableProfileRequest", {"profileIdentifier": ("iccid", iccid_to_bcd(iccid)), "refreshFlag": False})
    euicc.isdr.handle(1, command)


def test_euicc_package_result_forwarded_with_notifications_and_removed(euicc):
    seen = []

    def load(der):
        seen.append(der)
        _disable_bootstrap(euicc)
        return signed_result

    seq = 1
    signed_result = _result(seq + 1)
    _install_load_euicc_package(euicc, load)
    request = _package_request(euicc.eid)
    eim = FakeEim([eim_package("euiccPackageRequest", decode("EuiccPackageRequest", request))],
                  ack=lambda v: [seq])
    result = make_ipa(euicc, eim).poll()
    assert result.ok, (result.error, result.packages)
    assert seen == [request]  # the signed package reached the card unchanged
    (provided, raw), = eim.of("provideEimPackageResult")
    kind, epr = provided["eimPackageResult"]
    assert kind == "ePRAndNotifications"
    assert signed_result in raw  # byte for byte
    assert [n[0] for n in epr["notificationList"]] == ["otherSignedNotification"]
    outcome = result.packages[0]
    assert (outcome.kind, outcome.counter_value, outcome.eim_transaction_id) == ("euiccPackageRequest", 1, TID.hex().upper())
    assert outcome.result["results"] == [{"enableResult": "ok"}]
    assert outcome.result["acknowledged"] == [seq] and outcome.result["removed"] == [seq]
    assert _pending(euicc) == []
    assert result.notifications_delivered == 1


def test_euicc_package_unsupported_by_card_reported(euicc):
    request = _package_request(euicc.eid)
    eim = FakeEim([eim_package("euiccPackageRequest", decode("EuiccPackageRequest", request))])
    _install_load_euicc_package(euicc, None)  # "not available": 6A88
    result = make_ipa(euicc, eim).poll()
    (provided, _), = eim.of("provideEimPackageResult")
    assert provided["eimPackageResult"] == ("eimPackageResultResponseError",
                                            {"eimTransactionId": TID, "eimPackageResultErrorCode": 127})
    assert not result.ok and "LoadEuiccPackage" in result.packages[0].error and "6A88" in result.packages[0].error


def test_refresh_after_package_reopens_session(euicc):
    """The card resets right after answering LoadEuiccPackage (a REFRESH after an enable): the next ES10
    call fails on the dead channel; the IPA reopens the session and completes the package."""
    seq = 1
    signed_result = _result(seq + 1)
    _install_load_euicc_package(euicc, lambda der: (_disable_bootstrap(euicc), signed_result)[1])
    opened = []

    class ResettingTransport(InProcessTransport):
        armed = False

        def transmit(self, apdu: bytes) -> bytes:
            rapdu = super().transmit(apdu)
            if apdu[1] == 0xE2 and apdu[5:7] == b"\xbf\x51":
                self.armed = True
            elif self.armed and apdu[1] == 0xC0 and rapdu[-2:] == b"\x90\x00":
                self.armed = False
                self.card.reset()  # REFRESH "UICC reset" once the result has been read
            return rapdu

    def open_transport():
        t = ResettingTransport(euicc.card) if not opened else InProcessTransport(euicc.card)
        opened.append(t)
        return t

    eim = FakeEim([eim_package("euiccPackageRequest", decode("EuiccPackageRequest", _package_request(euicc.eid)))],
                  ack=lambda v: [seq])
    result = Ipa(open_transport, eim_url="https://eim.test", http_transport=httpx.MockTransport(eim)).poll()
    assert result.ok, (result.error, result.packages)
    assert result.refreshes == 1 and len(opened) == 2
    (provided, raw), = eim.of("provideEimPackageResult")
    assert provided["eimPackageResult"][0] == "ePRAndNotifications" and signed_result in raw
    assert _pending(euicc) == []


def test_leftover_notifications_delivered_to_eim(euicc):
    seq = _make_notification(euicc)
    eim = FakeEim()
    result = make_ipa(euicc, eim).poll()
    assert result.ok, result.error
    (notif, raw), = eim.of("handleNotificationEsipa")
    assert notif[0] == "pendingNotification" and raw[:2] == b"\xbf\x3d"
    assert [(n.seq_number, n.delivered, n.removed) for n in result.notifications] == [(seq, True, True)]
    assert _pending(euicc) == []


# --- unusable packages and bad replies ---------------------------------------------------------------


def test_invalid_and_unknown_packages_reported(euicc):
    broken = tlv(b"\xbf\x4f", tlv(b"\xbf\x54", bytes.fromhex("A00100")))  # profileDownloadData truncated
    unknown = tlv(b"\xbf\x4f", tlv(b"\xbf\x7f", b"\x01"))
    ok = {"Content-Type": CONTENT_TYPE}
    eim = FakeEim([httpx.Response(200, content=broken, headers=ok), httpx.Response(200, content=unknown, headers=ok)])
    result = make_ipa(euicc, eim).poll()
    codes = [v["eimPackageResult"] for v, _ in eim.of("provideEimPackageResult")]
    assert codes == [("eimPackageResultResponseError", {"eimPackageResultErrorCode": 1}),
                     ("eimPackageResultResponseError", {"eimPackageResultErrorCode": 2})]
    assert [p.kind for p in result.packages] == ["invalidPackage", "unknownPackage"]
    assert not result.ok and not result.error


def test_bad_activation_code_is_invalid_package_format(euicc):
    eim = FakeEim([eim_package("profileDownloadTriggerRequest", {"profileDownloadData": ("activationCode", "garbage"),
                                                            "eimTransactionId": TID})])
    result = make_ipa(euicc, eim).poll()
    (provided, _), = eim.of("provideEimPackageResult")
    assert provided["eimPackageResult"] == ("eimPackageResultResponseError",
                                            {"eimTransactionId": TID, "eimPackageResultErrorCode": 1})
    assert "invalidPackageFormat" in result.packages[0].error


def test_download_requiring_confirmation_code_without_one_is_a_download_error(euicc):
    """An activation code with the Confirmation Code Required Flag and no code on the IPA: nothing is sent
    to the SM-DP+, the eIM gets profileDownloadError undefinedError."""
    eim = FakeEim([eim_package("profileDownloadTriggerRequest",
                               {"profileDownloadData": ("activationCode", "1$smdp.test$MID-1$$1"),
                                "eimTransactionId": TID})])
    result = make_ipa(euicc, eim).poll()
    (provided, _), = eim.of("provideEimPackageResult")
    kind, value = provided["eimPackageResult"]
    assert kind == "profileDownloadTriggerResult"
    assert value["profileDownloadTriggerResultData"] == ("profileDownloadError", {"profileDownloadErrorReason": 127})
    assert "Confirmation Code" in result.packages[0].error and not result.packages[0].ok


@pytest.mark.parametrize("reply, expected", [
    (httpx.Response(500, content=b"boom"), "ESipa GetEimPackage: HTTP 500 (expected 200 with getEimPackageResponse)"),
    (httpx.Response(200, content=NO_PACKAGE, headers={"Content-Type": "application/json"}),
     "ESipa GetEimPackage: response Content-Type 'application/json', expected application/x-gsma-rsp-asn1"),
    (httpx.Response(200, content=b"\x30\x00", headers={"Content-Type": CONTENT_TYPE}),
     "ESipa GetEimPackage: response is not a known EsipaMessageFromEimToIpa alternative (tag 30; expected "
     "getEimPackageResponse)"),
    (httpx.Response(200, content=b"\xbf\x4f\x05\x01", headers={"Content-Type": CONTENT_TYPE}),
     "ESipa GetEimPackage: response is not a DER EsipaMessageFromEimToIpa (expected getEimPackageResponse)"),
    (httpx.Response(200, content=encode(FROM_EIM, ("provideEimPackageResultResponse", ("emptyResponse", {}))),
                    headers={"Content-Type": CONTENT_TYPE}),
     "ESipa GetEimPackage: the eIM answered provideEimPackageResultResponse, expected getEimPackageResponse"),
])
def test_bad_eim_replies_are_clear_errors(euicc, reply, expected):
    eim = FakeEim([reply])
    result = make_ipa(euicc, eim).poll()
    assert result.error.startswith(expected), result.error
    assert not result.infrastructure and not result.ok


def test_unreachable_eim_is_infrastructure(euicc):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    result = Ipa(lambda: InProcessTransport(euicc.card), eim_url="eim.test:1",
                 http_transport=httpx.MockTransport(refuse), delivery_retries=1).poll()
    assert result.infrastructure and "ESipa GetEimPackage: ConnectError" in result.error


def test_eim_error_codes(euicc):
    eim = FakeEim([eim_package("eimPackageError", 2)])
    result = make_ipa(euicc, eim).poll()
    assert "eidNotFound" in result.error and not result.infrastructure


def test_parse_roundtrip_of_ipa_messages():
    """The hand-assembled messages equal the codec's DER for canonical input."""
    from sgp32hil.harness.ipa.esipa_client import retag

    pir_like = encode("SGP32-CancelSessionResponse", ("cancelSessionResponseError", 1))
    msg = tlv(b"\xbf\x41", tlv(b"\x80", TID) + retag(pir_like, b"\xa1"))
    value = decode(FROM_IPA, msg)
    assert encode(FROM_IPA, value) == msg
    assert parse_single(msg).tag == b"\xbf\x41"
