"""SM-DP+ procedures (SGP.22 §3.1.2/§3.1.3, §5.6, §5.3) against a test eUICC that plays the crypto role."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import pytest
from cryptography import x509

from sgp32hil.harness import asn1, bsp, es2p, es9p, pki
from sgp32hil.harness.es9p import Es9Error
from sgp32hil.harness.saip import make_profile, read_profile
from sgp32hil.harness.smdp import ProfileState, SmdpService, SmdpStore
from sgp32hil.harness.smdp.service import sig_tlv, tlv

ICCID = "8949001234567890128"


def _sign(key, data: bytes) -> bytes:
    return pki.sign_plain(key, data)


@dataclass
class EuiccRole:
    """The eUICC's side of the download crypto, driven by the tests (not a card)."""

    pki_set: pki.PkiSet
    curve: pki.Curve = pki.Curve.NIST
    cred: pki.Credential | None = None
    eum: pki.Credential | None = None

    def __post_init__(self):
        self.cred = self.cred or self.pki_set.require(pki.Role.EUICC, self.curve)
        self.eum = self.eum or self.pki_set.require(pki.Role.EUM, self.curve)
        self.challenge = bytes(range(16))
        self.ot: pki.KeyPair | None = None

    @property
    def eid(self) -> str:
        return pki.eid_of(self.cred.certificate)

    def euicc_info1(self, pkids: list[bytes] | None = None) -> bytes:
        pkids = pkids if pkids is not None else [pki.ci_pkid(self.pki_set.require(pki.Role.CI, self.curve).certificate)]
        return asn1.encode(
            "EUICCInfo1",
            {"svn": b"\x02\x05\x00", "euiccCiPKIdListForVerification": pkids, "euiccCiPKIdListForSigning": pkids},
        )

    def initiate_request(self, address: str, **kw) -> es9p.InitiateAuthenticationRequest:
        return es9p.InitiateAuthenticationRequest(self.challenge, kw.get("info1") or self.euicc_info1(), address)

    def euicc_info2(self) -> dict:
        pkid = pki.ci_pkid(self.pki_set.require(pki.Role.CI, self.curve).certificate)
        return {
            "profileVersion": b"\x02\x03\x01",
            "svn": b"\x02\x05\x00",
            "euiccFirmwareVer": b"\x01\x00\x00",
            "extCardResource": b"\x81\x01\x00",
            "uiccCapability": (b"\x40", 2),
            "rspCapability": (b"\x80", 1),
            "euiccCiPKIdListForVerification": [pkid],
            "euiccCiPKIdListForSigning": [pkid],
            "ppVersion": b"\x01\x00\x00",
            "sasAcreditationNumber": "TEST",
        }

    def authenticate_server(
        self,
        init: es9p.InitiateAuthenticationResponse,
        matching_id: str | None,
        *,
        server_challenge: bytes | None = None,
        tamper_signature: bool = False,
    ) -> es9p.AuthenticateClientRequest:
        dp_auth = x509.load_der_x509_certificate(init.server_certificate)
        assert init.server_signature1[:3] == b"\x5f\x37\x40"
        assert pki.verify_plain(dp_auth.public_key(), init.server_signed1, init.server_signature1[3:])
        signed1 = asn1.decode("ServerSigned1", init.server_signed1)
        assert signed1["euiccChallenge"] == self.challenge
        ctx = {"deviceInfo": {"tac": b"\x35\x29\x06\x11", "deviceCapabilities": {}}}
        if matching_id is not None:
            ctx["matchingId"] = matching_id
        euicc_signed1 = asn1.encode(
            "EuiccSigned1",
            {
                "transactionId": init.transaction_id,
                "serverAddress": signed1["serverAddress"],
                "serverChallenge": server_challenge or signed1["serverChallenge"],
                "euiccInfo2": self.euicc_info2(),
                "ctxParams1": ("ctxParamsForCommonAuthentication", ctx),
            },
        )
        signature = _sign(self.cred.private_key, euicc_signed1)
        if tamper_signature:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        self.euicc_signature1 = sig_tlv(signature)
        ok = tlv(b"\xa0", euicc_signed1 + self.euicc_signature1 + self.cred.der + self.eum.der)
        return es9p.AuthenticateClientRequest(init.transaction_id, tlv(b"\xbf\x38", ok))

    def prepare_download(
        self, auth: es9p.AuthenticateClientResponse, cc: str | None = None, *, reuse_otpk: bool = False
    ) -> es9p.GetBoundProfilePackageRequest:
        dp_pb = x509.load_der_x509_certificate(auth.smdp_certificate)
        assert pki.verify_plain(dp_pb.public_key(), auth.smdp_signed2 + self.euicc_signature1, auth.smdp_signature2[3:])
        smdp_signed2 = asn1.decode("SmdpSigned2", auth.smdp_signed2)
        self.smdp_signed2 = smdp_signed2
        if not (reuse_otpk and self.ot is not None):
            self.ot = pki.KeyPair.generate(self.curve)
        value = {"transactionId": auth.transaction_id, "euiccOtpk": self.ot.public_bytes}
        if cc is not None:
            value["hashCc"] = hashlib.sha256(hashlib.sha256(cc.encode()).digest() + auth.transaction_id).digest()
        signed2 = asn1.encode("EUICCSigned2", value)
        signature = _sign(self.cred.private_key, signed2 + auth.smdp_signature2)
        pdr = tlv(b"\xbf\x21", tlv(b"\xa0", signed2 + sig_tlv(signature)))
        return es9p.GetBoundProfilePackageRequest(auth.transaction_id, pdr)

    def open_bpp(self, bpp: bytes, transaction_id: bytes, ppk=None) -> tuple[bytes, bytes]:
        """Verify smdpSign and unwrap the BPP; returns (StoreMetadata DER, profile package)."""
        top = asn1.parse_single(bpp)
        assert top.tag == b"\xbf\x36"
        parts = top.children()
        isc = parts[0].raw
        value = asn1.decode("InitialiseSecureChannelRequest", isc)
        assert value["transactionId"] == transaction_id
        assert value["controlRefTemplate"]["keyType"] == b"\x88"
        signed = asn1.initialise_secure_channel_signed(isc)
        dp_pb = self.pki_set.require(pki.Role.DP_PB, self.curve)
        assert dp_pb.verify(signed.data + tlv(b"\x5f\x49", self.ot.public_bytes), signed.signature)
        keys = bsp.session_keys_from_ecka(
            self.ot, value["smdpOtpk"], host_id=value["controlRefTemplate"]["hostId"], eid=self.eid
        )
        verifier = bsp.BspVerifier(keys)
        tags = [p.tag for p in parts[1:]]
        seg = {p.tag: [c.raw for c in p.children()] for p in parts[1:]}
        assert verifier.unwrap_all(seg[b"\xa0"], True) == asn1.encode("ConfigureISDPRequest", {})
        metadata = verifier.unwrap_all(seg[b"\xa1"], False)
        if ppk is not None:
            assert tags == [b"\xa0", b"\xa1", b"\xa2", b"\xa3"]
            rsk = verifier.unwrap_all(seg[b"\xa2"], True)
            new = bsp.parse_replace_session_keys(rsk)
            verifier.replace_session_keys(new.s_enc, new.s_mac, new.initial_mcv)
        else:
            assert tags == [b"\xa0", b"\xa1", b"\xa3"]
        return metadata, verifier.unwrap_all(seg[b"\xa3"], True)

    def installation_result(self, transaction_id: bytes, iccid: str, *, success: bool = True) -> bytes:
        dp_pb = self.pki_set.require(pki.Role.DP_PB, self.curve).certificate
        oid = dp_pb.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.RegisteredID
        )[0].dotted_string
        from sgp32hil.harness.saip import iccid_to_bcd

        result = (
            ("successResult", {"aid": bytes.fromhex("A0000005591010FFFFFFFF8900001000"), "simaResponse": b"\x30\x00"})
            if success
            else ("errorResult", {"bppCommandId": 3, "errorReason": 1})
        )
        data = asn1.encode(
            "ProfileInstallationResultData",
            {
                "transactionId": transaction_id,
                "notificationMetadata": {
                    "seqNumber": 7,
                    "profileManagementOperation": (b"\x80", 4),
                    "notificationAddress": "localhost",
                    "iccid": iccid_to_bcd(iccid),
                },
                "smdpOid": oid,
                "finalResult": result,
            },
        )
        return tlv(b"\xbf\x37", data + sig_tlv(_sign(self.cred.private_key, data)))

    def cancel(self, transaction_id: bytes, reason: int = 1, oid: str | None = None) -> es9p.CancelSessionRequest:
        dp_auth = self.pki_set.require(pki.Role.DP_AUTH, self.curve).certificate
        oid = oid or dp_auth.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.RegisteredID)[0].dotted_string
        signed = asn1.encode("EuiccCancelSessionSigned", {"transactionId": transaction_id, "smdpOid": oid, "reason": reason})
        body = tlv(b"\xbf\x41", tlv(b"\xa0", signed + sig_tlv(_sign(self.cred.private_key, signed))))
        return es9p.CancelSessionRequest(transaction_id, body)


@pytest.fixture(scope="session")
def pki_set(tmp_path_factory):
    return pki.ensure(tmp_path_factory.mktemp("pki"), quiet=True)


@pytest.fixture
def store(tmp_path):
    s = SmdpStore(tmp_path / "smdp.db")
    yield s
    s.close()


@pytest.fixture
def service(pki_set, store):
    return SmdpService(pki_set, store)


PACKAGE = make_profile(ICCID, "001010123456789", apn="internet", name="Test One")


def add(store, matching_id="MID-1", **kw):
    return store.add_order(matching_id, package=PACKAGE, imsi="001010123456789", name="Test One", **kw)


def download(service, euicc, matching_id="MID-1", cc=None):
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    auth = service.authenticate_client(euicc.authenticate_server(init, matching_id))
    bpp = service.get_bound_profile_package(euicc.prepare_download(auth, cc))
    return init, auth, bpp


@pytest.mark.parametrize("curve", [pki.Curve.NIST, pki.Curve.BRP])
def test_full_download_both_curves(service, store, pki_set, curve):
    add(store)
    euicc = EuiccRole(pki_set, curve)
    init, auth, bpp = download(service, euicc)
    assert init.euicc_ci_pkid_to_be_used == tlv(b"\x04", pki.ci_pkid(pki_set.require(pki.Role.CI, curve).certificate))
    assert euicc.smdp_signed2 == {"transactionId": init.transaction_id, "ccRequiredFlag": False}
    metadata, package = euicc.open_bpp(bpp.bound_profile_package, init.transaction_id)
    assert package == PACKAGE
    assert metadata == auth.profile_metadata
    assert asn1.decode("StoreMetadataRequest", metadata)["profileName"] == "Test One"
    assert store.profile_state(ICCID) == ProfileState.DOWNLOADED
    service.handle_notification(es9p.HandleNotificationRequest(euicc.installation_result(init.transaction_id, ICCID)))
    assert store.profile_state(ICCID) == ProfileState.INSTALLED
    assert store.notifications()[-1]["result"] == "success"


def test_fallback_metadata_and_ppk(pki_set, store):
    service = SmdpService(pki_set, store, ppk=(b"\x11" * 16, b"\x22" * 16, b"\x33" * 16))
    add(store, fallback=True)
    euicc = EuiccRole(pki_set)
    init, auth, bpp = download(service, euicc)
    assert asn1.decode("SGP32-StoreMetadataRequest", auth.profile_metadata)["fallbackAllowed"] is True
    _, package = euicc.open_bpp(bpp.bound_profile_package, init.transaction_id, ppk=True)
    assert package == PACKAGE


def test_confirmation_code(service, store, pki_set):
    add(store, confirmation_code="1234", max_cc_attempts=2)
    euicc = EuiccRole(pki_set)
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    auth = service.authenticate_client(euicc.authenticate_server(init, "MID-1"))
    assert asn1.decode("SmdpSigned2", auth.smdp_signed2)["ccRequiredFlag"] is True
    with pytest.raises(Es9Error) as exc:
        service.get_bound_profile_package(euicc.prepare_download(auth))
    assert exc.value.code == es9p.CONFIRMATION_CODE_MISSING
    with pytest.raises(Es9Error) as exc:
        service.get_bound_profile_package(euicc.prepare_download(auth, "9999"))
    assert exc.value.code == es9p.CONFIRMATION_CODE_REFUSED
    bpp = service.get_bound_profile_package(euicc.prepare_download(auth, "1234"))
    assert euicc.open_bpp(bpp.bound_profile_package, init.transaction_id)[1] == PACKAGE


def test_confirmation_code_retries_exceeded(service, store, pki_set):
    add(store, confirmation_code="1234", max_cc_attempts=2)
    euicc = EuiccRole(pki_set)
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    auth = service.authenticate_client(euicc.authenticate_server(init, "MID-1"))
    with pytest.raises(Es9Error):
        service.get_bound_profile_package(euicc.prepare_download(auth, "0000"))
    with pytest.raises(Es9Error) as exc:
        service.get_bound_profile_package(euicc.prepare_download(auth, "0000"))
    assert exc.value.code == es9p.CONFIRMATION_CODE_RETRIES_EXCEEDED


def test_same_otpk_retry(service, store, pki_set):
    add(store)
    euicc = EuiccRole(pki_set)
    init, auth, bpp = download(service, euicc)
    again = service.get_bound_profile_package(euicc.prepare_download(auth, reuse_otpk=True))
    assert again.bound_profile_package == bpp.bound_profile_package
    init2 = service.initiate_authentication(euicc.initiate_request(service.address))
    auth2 = service.authenticate_client(euicc.authenticate_server(init2, "MID-1"))
    assert asn1.decode("SmdpSigned2", auth2.smdp_signed2)["bppEuiccOtpk"] == euicc.ot.public_bytes
    bpp2 = service.get_bound_profile_package(euicc.prepare_download(auth2, reuse_otpk=True))
    first = asn1.decode("InitialiseSecureChannelRequest", asn1.parse_single(bpp.bound_profile_package).children()[0].raw)
    second = asn1.decode("InitialiseSecureChannelRequest", asn1.parse_single(bpp2.bound_profile_package).children()[0].raw)
    assert first["smdpOtpk"] == second["smdpOtpk"]
    assert euicc.open_bpp(bpp2.bound_profile_package, init2.transaction_id)[1] == PACKAGE


def test_initiate_errors(service, pki_set):
    euicc = EuiccRole(pki_set)
    with pytest.raises(Es9Error) as exc:
        service.initiate_authentication(euicc.initiate_request("other.example"))
    assert exc.value.code == es9p.SMDP_ADDRESS_REFUSED
    with pytest.raises(Es9Error) as exc:
        service.initiate_authentication(euicc.initiate_request(service.address, info1=euicc.euicc_info1([b"\x01" * 20])))
    assert exc.value.code == es9p.SECURITY_CONFIGURATION_UNSUPPORTED


def test_authenticate_errors(service, store, pki_set):
    add(store, eid=None)
    euicc = EuiccRole(pki_set)

    def attempt(**kw):
        init = service.initiate_authentication(euicc.initiate_request(service.address))
        with pytest.raises(Es9Error) as exc:
            service.authenticate_client(euicc.authenticate_server(init, kw.pop("mid", "MID-1"), **kw))
        return exc.value.code

    assert attempt(tamper_signature=True) == es9p.EUICC_SIGNATURE_INVALID
    assert attempt(server_challenge=b"\x00" * 16) == es9p.EUICC_SIGNATURE_INVALID
    assert attempt(mid="NOPE") == es9p.MATCHING_ID_REFUSED
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(es9p.AuthenticateClientRequest(b"\x99" * 16, b"\xbf\x38\x00"))
    assert exc.value.code == es9p.TRANSACTION_ID_UNKNOWN


def test_replayed_authenticate_client(service, store, pki_set):
    add(store)
    euicc = EuiccRole(pki_set)
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    req = euicc.authenticate_server(init, "MID-1")
    service.authenticate_client(req)
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(req)
    assert exc.value.code == es9p.TRANSACTION_ID_UNKNOWN


def test_eid_bound_and_expired_orders(service, store, pki_set):
    euicc = EuiccRole(pki_set)
    add(store, "BOUND", eid="89049032000000000000000000000000"[:-2] + "00")
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(euicc.authenticate_server(init, "BOUND"))
    assert exc.value.code == es9p.EID_REFUSED
    store.add_order("OLD", package=make_profile("8949001234567890136", "001010123456780"), expires=time.time() - 1)
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(euicc.authenticate_server(init, "OLD"))
    assert exc.value.code == es9p.DOWNLOAD_ORDER_EXPIRED


def test_default_order_by_eid(service, store, pki_set):
    euicc = EuiccRole(pki_set)
    add(store, "FOR-EID", eid=euicc.eid)
    init, auth, bpp = download(service, euicc, matching_id=None)
    assert euicc.open_bpp(bpp.bound_profile_package, init.transaction_id)[1] == PACKAGE


def test_foreign_ci_and_out_of_range_eid(service, store, pki_set, tmp_path):
    add(store)
    other = pki.generate(tmp_path / "other")
    foreign = EuiccRole(pki_set, cred=other.require(pki.Role.EUICC), eum=other.require(pki.Role.EUM))
    init = service.initiate_authentication(foreign.initiate_request(service.address))
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(foreign.authenticate_server(init, "MID-1"))
    assert exc.value.code in (es9p.CI_PK_UNKNOWN, es9p.EUM_CERT_INVALID)
    eum = pki_set.require(pki.Role.EUM)
    subject = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, pki.make_eid("89049999", 7)),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "Stray eUICC"),
        ]
    )
    outside = pki.issue(pki.Role.EUICC, pki.Curve.NIST, subject, eum)
    stray = EuiccRole(pki_set, cred=outside)
    init = service.initiate_authentication(stray.initiate_request(service.address))
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(stray.authenticate_server(init, "MID-1"))
    assert exc.value.code == es9p.EUICC_CERT_INVALID


def test_cancel_session(service, store, pki_set):
    add(store)
    euicc = EuiccRole(pki_set)
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    service.authenticate_client(euicc.authenticate_server(init, "MID-1"))
    with pytest.raises(Es9Error) as exc:
        service.cancel_session(euicc.cancel(init.transaction_id, oid="1.2.3"))
    assert exc.value.code == es9p.SMDP_OID_INVALID
    assert service.cancel_session(euicc.cancel(init.transaction_id, reason=1)) == es9p.CancelSessionResponse()
    assert store.profile_state(ICCID) == ProfileState.RELEASED
    with pytest.raises(Es9Error) as exc:
        service.cancel_session(euicc.cancel(init.transaction_id))
    assert exc.value.code == es9p.TRANSACTION_ID_UNKNOWN


def test_an_authenticated_euicc_can_cancel_after_its_order_is_refused(service, store, pki_set):
    """The IPA cancels after a refused authenticateClient (unknown MatchingID): the SM-DP+ must verify that."""
    add(store)
    euicc = EuiccRole(pki_set)
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(euicc.authenticate_server(init, "NOPE"))
    assert exc.value.code == es9p.MATCHING_ID_REFUSED
    assert service.cancel_session(euicc.cancel(init.transaction_id, reason=1)) == es9p.CancelSessionResponse()
    assert store.profile_state(ICCID) == ProfileState.RELEASED


def test_es2_order_lifecycle(service, store, pki_set):
    store.add_profile(ICCID, PACKAGE, imsi="001010123456789")
    header = es9p.RequestHeader("op", "1")
    resp = service.download_order(es2p.DownloadOrderRequest(header))
    assert resp.iccid == ICCID
    euicc = EuiccRole(pki_set)
    conf = service.confirm_order(
        es2p.ConfirmOrderRequest(header, ICCID, release_flag=False, eid=euicc.eid, matching_id="ES2-1")
    )
    assert conf.matching_id == "ES2-1"
    init = service.initiate_authentication(euicc.initiate_request(service.address))
    with pytest.raises(Es9Error) as exc:
        service.authenticate_client(euicc.authenticate_server(init, "ES2-1"))
    assert exc.value.code == es9p.PROFILE_NOT_RELEASED
    service.release_profile(es2p.ReleaseProfileRequest(header, ICCID))
    init, auth, bpp = download(service, euicc, matching_id="ES2-1")
    assert read_profile(euicc.open_bpp(bpp.bound_profile_package, init.transaction_id)[1]).iccid == ICCID
    with pytest.raises(Es9Error) as exc:
        service.download_order(es2p.DownloadOrderRequest(header, iccid=ICCID))
    assert exc.value.code == es2p.ICCID_UNAVAILABLE


def test_es2_cancel_order(service, store):
    store.add_profile(ICCID, PACKAGE)
    header = es9p.RequestHeader("op", "1")
    service.download_order(es2p.DownloadOrderRequest(header, iccid=ICCID))
    service.cancel_order(es2p.CancelOrderRequest(header, ICCID, "Available"))
    assert store.profile_state(ICCID) == ProfileState.AVAILABLE
    with pytest.raises(Es9Error) as exc:
        service.release_profile(es2p.ReleaseProfileRequest(header, "8949001234567890995"))
    assert exc.value.code == es2p.ICCID_UNKNOWN
