"""ES10b download functions, the ES9+ client and the direct download procedure.

- BPP segmentation (SGP.22 §2.5.5) on a BoundProfilePackage built with the ASN.1 codec, sent through the
  real ISD-R APDU layer (:class:`EuiccCard`) to a scripted ES10 backend;
- the ES9+ client against a local HTTPS server (uvicorn, the test PKI's DPtls certificate, 127.0.0.1,
  ephemeral port) answering canned JSON;
- the procedure's control flow against a scripted eUICC and a scripted SM-DP+ (httpx MockTransport):
  call order, hashCc known answer, cancel session on failure, notification delivery and removal.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from sgp32hil.drivers.apdu.base import ApduError
from sgp32hil.drivers.apdu.inprocess import InProcessTransport
from sgp32hil.drivers.es10.client import Es10Client, Es10Error
from sgp32hil.drivers.es10.decode import make_bitstring
from sgp32hil.drivers.es10.download import (
    CtxParams1,
    DeviceInfo,
    authenticate_server,
    bpp_segments,
    cancel_session,
    hash_confirmation_code,
    load_bound_profile_package,
    prepare_download,
)
from sgp32hil.drivers.es10.types import iccid_to_bcd
from sgp32hil.drivers.virtual.euicc.card import CardStatus, EuiccCard
from sgp32hil.harness import es9p, pki
from sgp32hil.harness.activation import parse as parse_ac
from sgp32hil.harness.asn1 import decode, encode
from sgp32hil.harness.ipa import (
    PHASES,
    Es9Client,
    Es9Error,
    Es9TransportError,
    deliver_pending_notifications,
    download_profile,
    render_exchanges,
)
from tests.der_vectors import self_signed_certificate

TID = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
CHALLENGE = bytes(range(0x10, 0x20))
SERVER_CHALLENGE = bytes(range(0x20, 0x30))
CI_PKID = bytes.fromhex("F54172BDF98A95D65CBEB88A38A1C11D800A85C3")
ICCID = "89882280000012345678"
ISDP_AID = bytes.fromhex("A0000005591010FFFFFFFF8900001200")
ADDRESS = "smdp.example.com"
SIG = b"\x5f\x37\x40" + b"\x11" * 64
# SHA256(SHA256("12345678") | 000102..0F), computed independently with openssl dgst.
HASH_CC_12345678 = bytes.fromhex("ab311c0527db635c7bac464efc070d69afecbba55a894064b394c56165610ec0")


DP_AUTH = self_signed_certificate("DPauth")
DP_PB = self_signed_certificate("DPpb")
EUICC_CERT = self_signed_certificate("eUICC")
EUM_CERT = self_signed_certificate("EUM")

EUICC_INFO1 = {"svn": b"\x02\x05\x00", "euiccCiPKIdListForVerification": [CI_PKID],
               "euiccCiPKIdListForSigning": [CI_PKID]}
EUICC_INFO2 = {
    "profileVersion": b"\x02\x03\x01", "svn": b"\x02\x05\x00", "euiccFirmwareVer": b"\x01\x02\x03",
    "extCardResource": bytes.fromhex("810100820300C350830207D0"),
    "uiccCapability": make_bitstring([1, 2, 4]), "rspCapability": make_bitstring([0, 1, 3]),
    "euiccCiPKIdListForVerification": [CI_PKID], "euiccCiPKIdListForSigning": [CI_PKID],
    "euiccCategory": 1, "ppVersion": b"\x01\x00\x00", "sasAcreditationNumber": "SGP32HIL-SAS-0001",
    "ipaMode": 0, "iotSpecificInfo": {"iotVersion": [b"\x01\x02\x00"]},
}


def server_signed1(address: str = ADDRESS) -> bytes:
    return encode("ServerSigned1", {"transactionId": TID, "euiccChallenge": CHALLENGE, "serverAddress": address,
                                    "serverChallenge": SERVER_CHALLENGE})


def smdp_signed2(cc_required: bool = False) -> bytes:
    return encode("SmdpSigned2", {"transactionId": TID, "ccRequiredFlag": cc_required})


def make_bpp(*, n88: int = 2, second87: bool = True, n86: int = 3, size86: int = 700) -> bytes:
    value = {
        "initialiseSecureChannelRequest": {
            "remoteOpId": 1, "transactionId": TID,
            "controlRefTemplate": {"keyType": b"\x88", "keyLen": b"\x10", "hostId": b"sgp32-hil"},
            "smdpOtpk": b"\x04" + b"\x22" * 64, "smdpSign": b"\x33" * 64,
        },
        "firstSequenceOf87": [b"\x87" * 48],
        "sequenceOf88": [bytes([0x88 + i]) * (40 + i) for i in range(n88)],
        "sequenceOf86": [bytes([i]) * size86 for i in range(n86)],
    }
    if second87:
        value["secondSequenceOf87"] = [b"\x99" * 64]
    return encode("BoundProfilePackage", value)


def pir(*, seq: int = 7, error: tuple[int, int] | None = None, address: str = ADDRESS) -> bytes:
    final = (("errorResult", {"bppCommandId": error[0], "errorReason": error[1]}) if error
             else ("successResult", {"aid": ISDP_AID, "simaResponse": b"\x30\x00"}))
    return encode("SGP32-ProfileInstallationResult", {
        "profileInstallationResultData": {
            "transactionId": TID,
            "notificationMetadata": {"seqNumber": seq, "profileManagementOperation": make_bitstring([0]),
                                     "notificationAddress": address, "iccid": iccid_to_bcd(ICCID)},
            "smdpOid": "2.999.10",
            "finalResult": final,
        },
        "euiccSignPIR": b"\x44" * 64,
    })


def _tag(command: bytes) -> int:
    return int.from_bytes(command[:2], "big") if command[0] & 0x1F == 0x1F else command[0]


class DownloadEuicc:
    """Scripted ES10 backend for the download functions; ``log`` keeps (tag, command) in order."""

    def __init__(self):
        self.log: list[tuple[int, bytes]] = []
        self.segments: list[bytes] = []
        self.segments_expected = 0
        self.pir_at: int | None = None
        self.pir_error: tuple[int, int] | None = None
        self.auth_error: int | None = None
        self.prepare_error: int | None = None
        self.bpp_status: dict[int, int] = {}
        self.notifications: list[bytes] = []
        self.removed: list[int] = []

    def handle(self, channel: int, command: bytes) -> bytes:
        tag = _tag(command)
        self.log.append((tag, command))
        if tag in (0xBF36, 0xA0, 0xA1, 0xA2, 0xA3, 0x86, 0x87, 0x88):
            return self._segment(command)
        if tag == 0xBF2E:
            return encode("GetEuiccChallengeResponse", {"euiccChallenge": CHALLENGE})
        if tag == 0xBF20:
            return encode("EUICCInfo1", EUICC_INFO1)
        if tag == 0xBF38:
            request = decode("AuthenticateServerRequest", command)
            if self.auth_error is not None:
                return encode("SGP32-AuthenticateServerResponse", ("authenticateResponseError", {
                    "transactionId": TID, "authenticateErrorCode": self.auth_error}))
            signed = request["serverSigned1"]
            return encode("SGP32-AuthenticateServerResponse", ("authenticateResponseOk", {
                "euiccSigned1": {"transactionId": signed["transactionId"], "serverAddress": signed["serverAddress"],
                                 "serverChallenge": signed["serverChallenge"], "euiccInfo2": EUICC_INFO2,
                                 "ctxParams1": request["ctxParams1"]},
                "euiccSignature1": b"\x55" * 64,
                "euiccCertificate": decode("Certificate", EUICC_CERT),
                "eumCertificate": decode("Certificate", EUM_CERT),
            }))
        if tag == 0xBF21:
            request = decode("PrepareDownloadRequest", command)
            if self.prepare_error is not None:
                return encode("SGP32-PrepareDownloadResponse", ("downloadResponseError", {
                    "transactionId": TID, "downloadErrorCode": self.prepare_error}))
            signed2 = {"transactionId": TID, "euiccOtpk": b"\x04" + b"\x66" * 64}
            if "hashCc" in request:
                signed2["hashCc"] = request["hashCc"]
            return encode("SGP32-PrepareDownloadResponse", ("downloadResponseOk", {
                "euiccSigned2": signed2, "euiccSignature2": b"\x77" * 64}))
        if tag == 0xBF41:
            request = decode("CancelSessionRequest", command)
            return encode("SGP32-CancelSessionResponse", ("cancelSessionResponseOk", {
                "euiccCancelSessionSigned": {"transactionId": request["transactionId"], "smdpOid": "2.999.10",
                                             "reason": request["reason"]},
                "euiccCancelSessionSignature": b"\x88" * 64}))
        if tag == 0xBF30:
            seq = decode("NotificationSentRequest", command)["seqNumber"]
            self.removed.append(seq)
            return encode("NotificationSentResponse", {"deleteNotificationStatus": 0})
        if tag == 0xBF2B:
            items = [decode("SGP32-PendingNotification", n) for n in self.notifications]
            return encode("SGP32-RetrieveNotificationsListResponse", ("notificationList", items))
        raise CardStatus(0x6A88)

    def _segment(self, command: bytes) -> bytes:
        self.segments.append(command)
        number = len(self.segments)
        if number in self.bpp_status:
            raise CardStatus(self.bpp_status[number])
        if self.pir_at == number:
            return pir(error=self.pir_error)
        if number == self.segments_expected:
            return pir()
        return b""

    def functions(self) -> list[int]:
        """Command tags in order, the LoadBoundProfilePackage segments folded into one 0xBF36."""
        out: list[int] = []
        for tag, _ in self.log:
            tag = 0xBF36 if tag in (0xA0, 0xA1, 0xA2, 0xA3, 0x86, 0x87, 0x88) else tag
            if not (tag == 0xBF36 and out and out[-1] == 0xBF36):
                out.append(tag)
        return out


@pytest.fixture
def euicc():
    return DownloadEuicc()


@pytest.fixture
def client(euicc):
    transport = InProcessTransport(EuiccCard(euicc))
    with Es10Client(transport) as c:
        yield c


# --- BPP segmentation and LoadBoundProfilePackage --------------------------------------------------


def test_bpp_segments_follow_sgp22_2_5_5():
    bpp = make_bpp(n88=2, second87=True, n86=3)
    top = decode("BoundProfilePackage", bpp)
    segments = bpp_segments(bpp)
    parts = [s.part for s in segments]
    assert parts == [
        "initialiseSecureChannelRequest",
        "firstSequenceOf87 + first '87'",
        "sequenceOf88 header", "sequenceOf88 '88'", "sequenceOf88 '88'",
        "secondSequenceOf87 + first '87'",
        "sequenceOf86 header", "sequenceOf86 '86'", "sequenceOf86 '86'", "sequenceOf86 '86'",
    ]
    data = [s.data for s in segments]
    isc = encode("InitialiseSecureChannelRequest", top["initialiseSecureChannelRequest"])
    assert data[0] == bpp[:5] + isc and bpp[:3] == bytes.fromhex("BF3682")
    assert data[1] == bytes([0xA0, 50, 0x87, 48]) + b"\x87" * 48
    assert data[2] == bytes([0xA1, 42 + 43])
    assert data[3] == bytes([0x88, 40]) + b"\x88" * 40 and data[4] == bytes([0x88, 41]) + b"\x89" * 41
    assert data[5] == bytes([0xA2, 66, 0x87, 64]) + b"\x99" * 64
    assert data[6] == bytes([0xA3, 0x82, 0x08, 0x40])  # 3 x (4 + 700)
    assert data[7] == bytes([0x86, 0x82, 0x02, 0xBC]) + b"\x00" * 700
    # Headers and elements put back together are the BPP, byte for byte.
    assert b"".join(data) == bpp


def test_bpp_without_second_sequence_and_extra_87():
    bpp = make_bpp(second87=False, n86=1)
    assert [s.part for s in bpp_segments(bpp)][4:] == ["sequenceOf88 '88'", "sequenceOf86 header", "sequenceOf86 '86'"]
    two87 = encode("BoundProfilePackage", {**decode("BoundProfilePackage", bpp), "firstSequenceOf87": [b"a", b"b"]})
    parts = [s.part for s in bpp_segments(two87)]
    assert parts[1:3] == ["firstSequenceOf87 + first '87'", "firstSequenceOf87 '87'"]


@pytest.mark.parametrize("bad,words", [
    (b"\x30\x00", "BF36"),
    (bytes.fromhex("BF3600"), "initialiseSecureChannelRequest"),
    (bytes.fromhex("BF3605BF2302010100"), "not valid BER-TLV"),
    (bytes.fromhex("BF3605BF2300A100"), "expected firstSequenceOf87"),
    (bytes.fromhex("BF3609BF2300A0028600A100"), "holds tag 86"),
    (bytes.fromhex("BF360BBF2300A0028700A100A300"), "sequenceOf88 (A1) is empty"),
])
def test_bpp_structure_errors(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        bpp_segments(bad)


def test_load_bpp_sends_each_segment_as_its_own_command(client, euicc):
    bpp = make_bpp()
    expected = bpp_segments(bpp)
    euicc.segments_expected = len(expected)
    result = load_bound_profile_package(client, bpp)
    assert euicc.segments == [s.data for s in expected]
    assert result.success and result.isdp_aid == ISDP_AID and result.iccid == ICCID
    assert (result.seq_number, result.smdp_oid, result.notification_address) == (7, "2.999.10", ADDRESS)
    assert (result.segments_sent, result.segments_total) == (10, 10)
    assert result.der == pir()
    # The 700-byte '86' segments are chained over several STORE DATA blocks, one ES10 exchange each.
    ex = client.exchanges[-3]
    assert ex.request == expected[-3].data and len(ex.apdus) == 3
    assert [a.command[2] for a in ex.apdus] == [0x11, 0x11, 0x91]
    assert "LoadBoundProfilePackage" in client.trace()[-1].function


def test_load_bpp_stops_at_early_installation_result(client, euicc):
    bpp = make_bpp()
    euicc.segments_expected = len(bpp_segments(bpp))
    euicc.pir_at, euicc.pir_error = 2, (1, 8)
    result = load_bound_profile_package(client, bpp)
    assert len(euicc.segments) == 2
    assert not result.success and result.isdp_aid is None
    assert (result.bpp_command_id, result.error_reason) == ("configureISDP", "scp03tSecurityError")
    assert (result.segments_sent, result.segments_total) == (2, 10)
    with pytest.raises(Es10Error, match="scp03tSecurityError at configureISDP"):
        result.raise_for_error()


def test_load_bpp_without_result_or_with_status_word(client, euicc):
    bpp = make_bpp(n86=1)
    euicc.segments_expected = 99
    with pytest.raises(Es10Error, match="emptyResponse.*no ProfileInstallationResult after the last of 8"):
        load_bound_profile_package(client, bpp)
    euicc.segments.clear()
    euicc.bpp_status = {3: 0x6A80}
    with pytest.raises(ApduError):
        load_bound_profile_package(client, bpp)
    assert len(euicc.segments) == 3


# --- AuthenticateServer, PrepareDownload, CancelSession -----------------------------------------------


def test_authenticate_server_request_carries_the_signed_bytes_unchanged(client, euicc):
    ss1 = server_signed1()
    result = authenticate_server(client, ss1, SIG, b"\x04\x14" + CI_PKID, DP_AUTH,
                                 CtxParams1("MID-1", DeviceInfo(tac="35290611", imei="123456789012345")))
    tag, command = euicc.log[-1]
    assert tag == 0xBF38
    assert command.find(ss1) > 0 and command.find(SIG) > 0 and command.find(DP_AUTH) > 0
    request = decode("AuthenticateServerRequest", command)
    assert request["euiccCiPKIdToBeUsed"] == CI_PKID
    ctx = request["ctxParams1"][1]
    assert ctx["matchingId"] == "MID-1"
    assert ctx["deviceInfo"]["tac"] == bytes.fromhex("35290611")
    assert ctx["deviceInfo"]["imei"] == bytes.fromhex("123456789012345F")
    assert ctx["deviceInfo"]["deviceCapabilities"]["eutranEpcSupportedRelease"] == b"\x0f\x00\x00"
    assert result.ok and result.kind == "authenticateResponseOk" and result.transaction_id == TID
    assert result.der == client.exchanges[-1].response
    # The bare signature and key identifier values give the same command.
    authenticate_server(client, ss1, SIG[3:], CI_PKID, DP_AUTH,
                        CtxParams1("MID-1", DeviceInfo(tac="35290611", imei="123456789012345")))
    assert euicc.log[-1][1] == command


def test_authenticate_server_error_and_no_matching_id(client, euicc):
    euicc.auth_error = 6
    result = authenticate_server(client, server_signed1(), SIG, CI_PKID, DP_AUTH, CtxParams1(None))
    assert "matchingId" not in decode("AuthenticateServerRequest", euicc.log[-1][1])["ctxParams1"][1]
    assert not result.ok and (result.error_code, result.error_name) == (6, "euiccChallengeMismatch")
    with pytest.raises(Es10Error, match="AuthenticateServer: euiccChallengeMismatch"):
        result.raise_for_error()


def test_authenticate_server_rejects_inputs_that_are_not_der(client):
    with pytest.raises(ValueError, match="serverSigned1"):
        authenticate_server(client, b"\x04\x01\x00", SIG, CI_PKID, DP_AUTH, CtxParams1("A"))
    with pytest.raises(ValueError, match="serverCertificate"):
        authenticate_server(client, server_signed1(), SIG, CI_PKID, DP_AUTH + b"\x00", CtxParams1("A"))
    with pytest.raises(ValueError, match="TAC"):
        DeviceInfo(tac="35-29").to_asn1()


def test_prepare_download_with_hash_cc(client, euicc):
    hash_cc = hash_confirmation_code("12345678", TID)
    assert hash_cc == HASH_CC_12345678
    result = prepare_download(client, smdp_signed2(True), SIG, DP_PB, hash_cc)
    request = decode("PrepareDownloadRequest", euicc.log[-1][1])
    assert request["hashCc"] == HASH_CC_12345678
    assert euicc.log[-1][1].find(smdp_signed2(True)) > 0
    assert result.ok and result.hash_cc == HASH_CC_12345678 and result.euicc_otpk[:1] == b"\x04"
    euicc.prepare_error = 2
    result = prepare_download(client, smdp_signed2(), SIG, DP_PB)
    assert "hashCc" not in decode("PrepareDownloadRequest", euicc.log[-1][1])
    assert (result.ok, result.error_name) == (False, "invalidSignature")
    with pytest.raises(ValueError, match="32 bytes"):
        prepare_download(client, smdp_signed2(), SIG, DP_PB, b"\x00")


def test_cancel_session(client, euicc):
    result = cancel_session(client, TID, "loadBppExecutionError")
    assert decode("CancelSessionRequest", euicc.log[-1][1]) == {"transactionId": TID, "reason": 5}
    assert result.ok and result.reason == "loadBppExecutionError" and result.smdp_oid == "2.999.10"
    assert result.der[:2] == b"\xbf\x41"
    with pytest.raises(ValueError, match="unknown CancelSessionReason"):
        cancel_session(client, TID, "bored")


# --- ES9+ client over HTTPS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory):
    return pki.generate(tmp_path_factory.mktemp("pki"), curves=("nist",))


@contextmanager
def https_server(app, chain, key):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, ssl_certfile=str(chain), ssl_keyfile=str(key), log_level="warning",
                            lifespan="off", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test HTTPS server did not start")
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class CannedSmdp:
    """ASGI app answering ES9+ with canned JSON; records (function, headers, body, client address)."""

    def __init__(self):
        self.seen: list[tuple[str, dict, bytes, tuple]] = []
        self.answers: dict[str, tuple[int, bytes, str]] = {}
        self.delay: dict[str, float] = {}

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        function = scope["path"].rsplit("/", 1)[-1]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.seen.append((function, headers, body, tuple(scope["client"])))
        if function in self.delay:
            await asyncio.sleep(self.delay[function])
        status, content, ctype = self.answers.get(function, (404, b"", "text/plain"))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode())] if content else []})
        await send({"type": "http.response.body", "body": content})


def _json_answer(obj) -> tuple[int, bytes, str]:
    return 200, es9p.response_json(obj), es9p.CONTENT_TYPE


@pytest.fixture(scope="module")
def smdp_server(test_pki):
    app = CannedSmdp()
    chain, key = test_pki.tls_server_files(pki.Role.DP_TLS, "NIST")
    with https_server(app, chain, key) as port:
        yield app, port


@pytest.fixture
def canned(smdp_server):
    app, port = smdp_server
    app.seen.clear()
    app.answers.clear()
    app.delay.clear()
    return app, f"127.0.0.1:{port}"


def _init_response() -> es9p.InitiateAuthenticationResponse:
    return es9p.InitiateAuthenticationResponse(
        transaction_id=TID, server_signed1=server_signed1(), server_signature1=SIG,
        euicc_ci_pkid_to_be_used=b"\x04\x14" + CI_PKID, server_certificate=DP_AUTH)


def test_es9_client_https_headers_keep_alive_and_records(canned, test_pki):
    app, address = canned
    app.answers["initiateAuthentication"] = _json_answer(_init_response())
    app.answers["handleNotification"] = (204, b"", "")
    info1 = encode("EUICCInfo1", EUICC_INFO1)
    with Es9Client(address, ca=test_pki.tls_files["trust_bundle"], admin_protocol="gsma/rsp/v2.2.0") as es9:
        response = es9.initiate_authentication(CHALLENGE, info1)
        assert es9.handle_notification(pir()) is None
    assert response == _init_response()
    (f1, h1, b1, c1), (f2, _, b2, c2) = app.seen
    assert (f1, f2) == ("initiateAuthentication", "handleNotification")
    assert h1["content-type"] == "application/json;charset=UTF-8"
    assert h1["x-admin-protocol"] == "gsma/rsp/v2.2.0"
    assert h1["user-agent"] == "gsma-rsp-lpad"
    assert c1 == c2, "both calls must reuse one keep-alive connection"
    assert json.loads(b1) == {"euiccChallenge": es9p.to_json(es9p.InitiateAuthenticationRequest(
        CHALLENGE, info1, address))["euiccChallenge"], "euiccInfo1": json.loads(b1)["euiccInfo1"],
        "smdpAddress": address}
    first = es9.exchanges[0]
    assert first.url == f"https://{address}/gsma/rsp2/es9plus/initiateAuthentication"
    assert first.status_code == 200 and first.seconds > 0
    decoded = first.decoded()
    assert decoded["request"]["euiccInfo1"]["svn"] == "020500"
    assert decoded["response"]["serverSigned1"]["serverAddress"] == ADDRESS
    assert decoded["response"]["serverCertificate"]["tbsCertificate"]["serialNumber"] == 7
    assert es9.exchanges[1].status_code == 204 and es9.exchanges[1].response is None
    text = render_exchanges(es9.exchanges)
    assert "initiateAuthentication HTTP 200" in text and "handleNotification HTTP 204" in text
    json.dumps([e.to_dict() for e in es9.exchanges])


def test_es9_client_failed_status_raises_es9_error(canned):
    app, address = canned
    app.answers["getBoundProfilePackage"] = _json_answer(
        es9p.Es9Error("8.2.7", "3.8", "Confirmation Code refused"))
    with Es9Client(address, insecure=True) as es9:
        with pytest.raises(Es9Error) as info:
            es9.get_bound_profile_package(TID, b"\xbf\x21\x00")
    err = info.value
    assert (err.subject_code, err.reason_code, err.message) == ("8.2.7", "3.8", "Confirmation Code refused")
    assert err.status == "Failed"
    assert "8.2.7/3.8" in es9.exchanges[0].error


@pytest.mark.parametrize("answer,words", [
    ((500, b"boom", "text/plain"), "HTTP 500 \\(expected 200\\): boom"),
    ((200, b"<html/>", "text/html"), "Content-Type 'text/html'"),
    ((200, b'{"header":{"functionExecutionStatus":{"status":"Executed-Success"}}}', es9p.CONTENT_TYPE),
     "malformed response"),
    ((404, b"", "text/plain"), "HTTP 404"),
])
def test_es9_client_transport_errors(canned, answer, words):
    app, address = canned
    app.answers["authenticateClient"] = answer
    with Es9Client(address, insecure=True) as es9:
        with pytest.raises(Es9TransportError, match=words) as info:
            es9.authenticate_client(TID, b"\xbf\x38\x00")
    assert not info.value.timeout


def test_es9_client_handle_notification_must_be_204(canned):
    app, address = canned
    app.answers["handleNotification"] = _json_answer(es9p.CancelSessionResponse())
    with Es9Client(address, insecure=True) as es9, pytest.raises(Es9TransportError, match="expected 204"):
        es9.handle_notification(pir())


def test_es9_client_tls_verification(canned, test_pki, tmp_path):
    app, address = canned
    app.answers["cancelSession"] = _json_answer(es9p.CancelSessionResponse())
    other = pki.generate(tmp_path / "other", curves=("nist",))
    with Es9Client(address, ca=other.tls_files["trust_bundle"]) as es9:
        with pytest.raises(Es9TransportError, match="ConnectError"):
            es9.cancel_session(TID, b"\xbf\x41\x00")
    with Es9Client(address, pki_dir=test_pki.root) as es9:
        assert es9.cancel_session(TID, b"\xbf\x41\x00") == es9p.CancelSessionResponse()
    with pytest.raises(ValueError, match="not both"):
        Es9Client(address, ca=test_pki.tls_files["trust_bundle"], insecure=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Es9Client(address, ca=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="host\\[:port\\]"):
        Es9Client("https://smdp.example.com/")
    with pytest.raises(ValueError, match="X-Admin-Protocol"):
        Es9Client(address, insecure=True, admin_protocol="gsma/rsp/v3.0.0")


def test_es9_client_timeout(canned):
    app, address = canned
    app.answers["cancelSession"] = _json_answer(es9p.CancelSessionResponse())
    app.delay["cancelSession"] = 1.5
    with Es9Client(address, insecure=True, timeout=httpx.Timeout(0.3, connect=5.0)) as es9:
        with pytest.raises(Es9TransportError, match="timed out") as info:
            es9.cancel_session(TID, b"\xbf\x41\x00")
    assert info.value.timeout


def test_es9_client_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Es9Client(f"127.0.0.1:{port}", insecure=True) as es9:
        with pytest.raises(Es9TransportError, match="ConnectError"):
            es9.cancel_session(TID, b"\xbf\x41\x00")


# --- the procedure against a scripted eUICC and SM-DP+ ----------------------------------------------------


class ScriptedSmdp:
    """httpx MockTransport handler: parses each request with the ES9+ binding, answers from a script."""

    def __init__(self, bpp: bytes):
        self.bpp = bpp
        self.calls: list[tuple[str, object]] = []
        self.fail: dict[str, tuple[str, str, str]] = {}
        self.timeout: set[str] = set()
        self.cc_required = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        function = request.url.path.rsplit("/", 1)[-1]
        body = es9p.parse_request(function, request.content)
        self.calls.append((function, body))
        if function in self.timeout:
            raise httpx.ReadTimeout("no answer", request=request)
        if function in self.fail:
            return self._json(es9p.Es9Error(*self.fail[function]))
        if function == "initiateAuthentication":
            return self._json(_init_response())
        if function == "authenticateClient":
            metadata = encode("SGP32-StoreMetadataRequest", {"iccid": iccid_to_bcd(ICCID),
                                                             "serviceProviderName": "Carrier", "profileName": "Op"})
            return self._json(es9p.AuthenticateClientResponse(
                transaction_id=TID, profile_metadata=metadata, smdp_signed2=smdp_signed2(self.cc_required),
                smdp_signature2=SIG, smdp_certificate=DP_PB))
        if function == "getBoundProfilePackage":
            return self._json(es9p.GetBoundProfilePackageResponse(transaction_id=TID, bound_profile_package=self.bpp))
        if function == "handleNotification":
            return httpx.Response(204)
        if function == "cancelSession":
            return self._json(es9p.CancelSessionResponse())
        return httpx.Response(404)

    @staticmethod
    def _json(obj) -> httpx.Response:
        return httpx.Response(200, content=es9p.response_json(obj), headers={"content-type": es9p.CONTENT_TYPE})

    def functions(self) -> list[str]:
        return [f for f, _ in self.calls]


@pytest.fixture
def smdp():
    return ScriptedSmdp(make_bpp())


@pytest.fixture
def es9(smdp):
    with Es9Client(ADDRESS, insecure=True, transport=httpx.MockTransport(smdp)) as c:
        yield c


def _download(client, euicc, es9, smdp, code=f"LPA:1${ADDRESS}$MID-0001", **kwargs):
    euicc.segments_expected = len(bpp_segments(smdp.bpp))
    events = []
    result = download_profile(client, code, es9=es9, progress=events.append, **kwargs)
    return result, events


def test_download_success_order_notification_and_result(client, euicc, es9, smdp):
    result, events = _download(client, euicc, es9, smdp)
    assert result.success and result.error is None and result.cancel is None
    assert euicc.functions() == [0xBF2E, 0xBF20, 0xBF38, 0xBF21, 0xBF36, 0xBF30]
    assert smdp.functions() == ["initiateAuthentication", "authenticateClient", "getBoundProfilePackage",
                                "handleNotification"]
    init = smdp.calls[0][1]
    assert init.euicc_challenge == CHALLENGE and init.smdp_address == ADDRESS
    assert init.euicc_info1 == encode("EUICCInfo1", EUICC_INFO1)
    ctx = decode("AuthenticateServerRequest", euicc.log[2][1])["ctxParams1"][1]
    assert ctx["matchingId"] == "MID-0001"
    assert smdp.calls[1][1].authenticate_server_response == client.exchanges[2].response
    assert "hashCc" not in decode("PrepareDownloadRequest", euicc.log[3][1])
    assert smdp.calls[2][1].prepare_download_response == client.exchanges[3].response
    assert smdp.calls[3][1].pending_notification == pir()
    assert euicc.removed == [7]
    assert euicc.segments == [s.data for s in bpp_segments(smdp.bpp)]
    assert (result.iccid, result.isdp_aid, result.transaction_id) == (ICCID, ISDP_AID.hex().upper(), TID.hex().upper())
    assert result.notification.delivered and result.notification.removed
    assert [e.phase for e in events] == list(PHASES) and all(e.status == "ok" for e in events)
    assert set(result.timings) == set(PHASES) and result.total_seconds >= sum(result.timings.values()) * 0.99
    assert result.apdu_count == sum(len(e.apdus) for e in client.exchanges)
    assert len(result.es9_exchanges) == 4 and len(result.es10_trace) == len(client.exchanges)
    json.dumps(result.to_dict())


def test_download_with_confirmation_code_sends_hash_cc(client, euicc, es9, smdp):
    smdp.cc_required = True
    result, _ = _download(client, euicc, es9, smdp, code=f"LPA:1${ADDRESS}$MID-0001$$1", confirmation_code="12345678")
    assert result.success
    assert decode("PrepareDownloadRequest", euicc.log[3][1])["hashCc"] == HASH_CC_12345678


def test_download_cc_required_by_activation_code_but_missing():
    with pytest.raises(ValueError, match="Confirmation Code is required"):
        download_profile(None, f"LPA:1${ADDRESS}$MID$$1")


def test_download_cc_required_by_smdp_but_missing_cancels(client, euicc, es9, smdp):
    smdp.cc_required = True
    result, _ = _download(client, euicc, es9, smdp)
    assert not result.success and result.error.kind == "input"
    assert decode("CancelSessionRequest", euicc.log[-1][1]) == {"transactionId": TID, "reason": 1}  # postponed
    assert smdp.functions()[-1] == "cancelSession"


def test_download_es9_failure_cancels_session_on_both_sides(client, euicc, es9, smdp):
    smdp.fail["getBoundProfilePackage"] = ("8.2.7", "3.8", "Confirmation Code refused")
    result, events = _download(client, euicc, es9, smdp)
    assert not result.success
    err = result.error
    assert (err.phase, err.kind, err.subject_code, err.reason_code) == ("GetBoundProfilePackage", "es9", "8.2.7", "3.8")
    assert euicc.functions() == [0xBF2E, 0xBF20, 0xBF38, 0xBF21, 0xBF41]
    assert decode("CancelSessionRequest", euicc.log[-1][1]) == {"transactionId": TID, "reason": 127}
    assert smdp.functions()[-1] == "cancelSession"
    cancel_call = smdp.calls[-1][1]
    assert cancel_call.transaction_id == TID and cancel_call.cancel_session_response == client.exchanges[-1].response
    assert result.cancel.es10.ok and result.cancel.es9_sent and not result.cancel.es9_error
    assert [(e.phase, e.status) for e in events][-2:] == [("GetBoundProfilePackage", "failed"), ("CancelSession", "ok")]
    assert not euicc.segments and euicc.removed == []


def test_download_es9_timeout_cancels_with_reason_timeout(client, euicc, es9, smdp):
    smdp.timeout.add("getBoundProfilePackage")
    result, _ = _download(client, euicc, es9, smdp)
    assert result.error.kind == "es9-transport"
    assert decode("CancelSessionRequest", euicc.log[-1][1])["reason"] == 2


def test_download_load_failure_cancels_with_load_bpp_execution_error(client, euicc, es9, smdp):
    euicc.bpp_status = {4: 0x6A80}
    result, _ = _download(client, euicc, es9, smdp)
    assert (result.error.phase, result.error.kind) == ("LoadBoundProfilePackage", "apdu")
    assert decode("CancelSessionRequest", euicc.log[-1][1])["reason"] == 5
    assert smdp.functions()[-1] == "cancelSession"


def test_download_installation_error_is_delivered_not_cancelled(client, euicc, es9, smdp):
    euicc.pir_at, euicc.pir_error = 2, (1, 8)
    result, _ = _download(client, euicc, es9, smdp)
    assert not result.success and result.cancel is None
    err = result.error
    assert (err.kind, err.bpp_command_id, err.error_reason) == ("install", "configureISDP", "scp03tSecurityError")
    assert len(euicc.segments) == 2
    assert smdp.functions()[-1] == "handleNotification" and smdp.calls[-1][1].pending_notification == pir(error=(1, 8))
    assert euicc.removed == [7]
    assert result.installation.segments_sent == 2


def test_download_euicc_refusal_is_forwarded_without_cancel(client, euicc, es9, smdp):
    euicc.auth_error = 6
    smdp.fail["authenticateClient"] = ("8.1", "6.1", "eUICC refused")
    result, _ = _download(client, euicc, es9, smdp)
    assert smdp.functions() == ["initiateAuthentication", "authenticateClient"]
    assert decode("SGP32-AuthenticateServerResponse", smdp.calls[1][1].authenticate_server_response)[0] \
        == "authenticateResponseError"
    assert (result.error.kind, result.error.es10_name) == ("es10", "euiccChallengeMismatch")
    assert result.cancel is None and euicc.functions()[-1] == 0xBF38


def test_download_prepare_refusal_is_forwarded_without_cancel(client, euicc, es9, smdp):
    euicc.prepare_error = 2
    smdp.fail["getBoundProfilePackage"] = ("8.1", "6.1", "eUICC signature invalid")
    result, _ = _download(client, euicc, es9, smdp)
    assert smdp.functions()[-1] == "getBoundProfilePackage"
    assert (result.error.phase, result.error.es10_name) == ("PrepareDownload", "invalidSignature")
    assert result.cancel is None


def test_download_failure_before_session_does_not_cancel(client, euicc, es9, smdp):
    smdp.fail["initiateAuthentication"] = ("8.8.1", "3.8", "address refused")
    result, events = _download(client, euicc, es9, smdp)
    assert result.error.subject_code == "8.8.1" and result.cancel is None
    assert euicc.functions() == [0xBF2E, 0xBF20]
    assert [e.phase for e in events] == ["GetEUICCInfo", "InitiateAuthentication"]


def test_download_notification_failure_keeps_installed_profile(client, euicc, es9, smdp):
    smdp.fail["handleNotification"] = ("1.2", "4.2", "store down")
    result, _ = _download(client, euicc, es9, smdp)
    assert result.success and not result.notification.delivered and euicc.removed == []
    assert "store down" in result.notification.error


def test_deliver_pending_notifications(client, euicc, es9, smdp):
    other = encode("SGP32-PendingNotification", ("otherSignedNotification", {
        "tbsOtherNotification": {"seqNumber": 9, "profileManagementOperation": make_bitstring([1]),
                                 "notificationAddress": "other.example.com", "iccid": iccid_to_bcd(ICCID)},
        "euiccNotificationSignature": b"\x01" * 64,
        "euiccCertificate": decode("Certificate", EUICC_CERT),
        "eumCertificate": decode("Certificate", EUM_CERT)}))
    euicc.notifications = [pir(seq=3), other]
    outcomes = deliver_pending_notifications(client, es9)
    assert [(o.seq_number, o.kind, o.delivered, o.removed) for o in outcomes] == [
        (3, "profileInstallationResult", True, True), (9, "otherSignedNotification", False, False)]
    assert "other.example.com" in outcomes[1].error
    assert smdp.functions() == ["handleNotification"] and euicc.removed == [3]

    created = []

    def factory(address):
        created.append(address)
        return Es9Client(address, insecure=True, transport=httpx.MockTransport(smdp))

    outcomes = deliver_pending_notifications(client, factory, remove=False)
    assert [o.delivered for o in outcomes] == [True, True] and created == [ADDRESS, "other.example.com"]
    assert euicc.removed == [3]
    assert parse_ac(f"1${ADDRESS}$A").smdp_address == ADDRESS
