"""Profile download on the software eUICC (SGP.22 §3.1.2/§3.1.3, §5.7.5/§5.7.6/§5.7.13/§5.7.14).

The eUICC runs in process; the SM-DP+ is the bundled one over HTTPS on 127.0.0.1; the host side is the
IPA procedure (:func:`sgp32hil.harness.ipa.download_profile`) or its ES10b/ES9+ building blocks, so every
byte the eUICC sees comes from the real SM-DP+ unless a test alters it on purpose.
"""

from __future__ import annotations

import dataclasses
import hashlib
from urllib.parse import urlparse

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgp32hil.drivers.apdu.base import ApduError
from sgp32hil.drivers.es10 import download as es10b
from sgp32hil.drivers.es10.client import Es10Client
from sgp32hil.drivers.virtual.euicc import download as euicc_download
from sgp32hil.drivers.virtual.euicc.factory import encode_iccid
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc, in_process
from sgp32hil.drivers.virtual.euicc.state import StateStore
from sgp32hil.harness import asn1, pki
from sgp32hil.harness.es9p_client import Es9Client
from sgp32hil.harness.ipa import download_profile
from sgp32hil.harness.saip import make_profile
from sgp32hil.harness.smdp import ProfileState, run_in_thread

ICCID = "8949001234567890128"
IMSI = "001010123456789"
PACKAGE = make_profile(ICCID, IMSI, apn="internet", name="Download One")
OTHER_ICCID = "8949001234567890136"
OTHER_PACKAGE = make_profile(OTHER_ICCID, "001010123456790", apn="iot", name="Download Two")


@pytest.fixture(scope="module")
def pkiset(tmp_path_factory):
    return pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign_pki():
    return pki.generate(curves=("nist",))


@pytest.fixture
def smdp(pkiset, tmp_path):
    with run_in_thread(pkiset.root, tmp_path / "smdp.db") as running:
        running.service.address = f"127.0.0.1:{urlparse(running.es9_url).port}"
        yield running


@pytest.fixture
def euicc(pkiset, tmp_path):
    soft, transport = in_process(tmp_path / "euicc", pkiset)
    yield soft, transport
    soft.close()


@pytest.fixture
def es9(smdp):
    with Es9Client(smdp.service.address, ca=smdp.ca_file) as client:
        yield client


def order(smdp, matching_id: str, package: bytes = PACKAGE, **kwargs) -> str:
    smdp.store.add_order(matching_id, package=package, imsi=IMSI, name="Download One", **kwargs)
    return f"LPA:1${smdp.service.address}${matching_id}"


def on_disk(soft: SoftEuicc):
    return StateStore(soft.store.directory).load()


@dataclasses.dataclass
class Bound:
    """A download taken by hand up to the BPP: what each step returned."""

    transaction_id: bytes
    auth: es10b.AuthenticateServerResult
    accepted: object
    prepared: es10b.PrepareDownloadResult
    bpp: bytes


def authenticate(client: Es10Client, es9: Es9Client, matching_id: str):
    challenge = client.get_euicc_challenge()
    _, info1 = client.call("GetEUICCInfo1", "GetEuiccInfo1Request", {}, "EUICCInfo1")
    init = es9.initiate_authentication(challenge, info1, es9.address)
    auth = es10b.authenticate_server(client, init.server_signed1, init.server_signature1,
                                     init.euicc_ci_pkid_to_be_used, init.server_certificate,
                                     es10b.CtxParams1(matching_id))
    return init, auth


def bind(client: Es10Client, es9: Es9Client, matching_id: str, cc: str | None = None) -> Bound:
    """ES10b/ES9+ steps 1-6 of SGP.22 §3.1.3 against the real SM-DP+; returns the BPP."""
    init, auth = authenticate(client, es9, matching_id)
    assert auth.ok, auth.error_name
    accepted = es9.authenticate_client(init.transaction_id, auth.der)
    hash_cc = es10b.hash_confirmation_code(cc, init.transaction_id) if cc else None
    prepared = es10b.prepare_download(client, accepted.smdp_signed2, accepted.smdp_signature2,
                                      accepted.smdp_certificate, hash_cc)
    assert prepared.ok, prepared.error_name
    bound = es9.get_bound_profile_package(init.transaction_id, prepared.der)
    return Bound(init.transaction_id, auth, accepted, prepared, bound.bound_profile_package)


def verify_pir(pir: es10b.ProfileInstallationResult, soft: SoftEuicc, pkiset) -> dict:
    """The eUICC's signature over the exact ProfileInstallationResultData and its smdpOid."""
    signed = asn1.profile_installation_result_data(pir.der)
    cert = x509.load_der_x509_certificate(soft.state.euicc_cert)
    assert pki.verify_plain(cert.public_key(), signed.data, signed.signature)
    assert pir.smdp_oid == euicc_download.smdp_oid(pkiset.dp_pb().certificate)
    return asn1.decode("ProfileInstallationResultData", signed.data)


# ------------------------------------------------------------------------------------------------
# the whole procedure


@pytest.mark.parametrize("curve", ["nist", "brp"])
def test_direct_download_installs_disabled_profile(pkiset, smdp, tmp_path, curve):
    soft, transport = in_process(tmp_path / f"euicc-{curve}", pkiset, curve=curve)
    try:
        with Es10Client(transport) as client:
            result = download_profile(client, order(smdp, f"MID-{curve.upper()}"), ca=smdp.ca_file)
            assert result.success, result.error
            assert result.iccid == ICCID and result.cancel is None
            installed = soft.state.profile(ICCID)
            assert (installed.state, installed.imsi, installed.apn) == ("disabled", IMSI, "internet")
            assert installed.profile_name == "Download One" and installed.smdp_address == smdp.service.address
            assert on_disk(soft).profile(ICCID) is not None
            assert [p.state for p in client.get_profiles_info(iccid=ICCID)] == ["disabled"]
            pir = result.installation
            assert pir.success and pir.isdp_aid == installed.isdp_aid
            assert pir.notification_address == smdp.service.address
            data = verify_pir(pir, soft, pkiset)
            assert data["notificationMetadata"]["iccid"] == encode_iccid(ICCID)
            assert result.notification.delivered and result.notification.removed
            assert all(n.event != "install" for n in soft.state.notifications)
            assert soft.state.download_otsk == b"" and soft.isdr.session.download is None
        assert smdp.store.profile_state(ICCID) == ProfileState.INSTALLED
        assert smdp.store.notifications()[-1]["result"] == "success"
        ci = pkiset.ci(curve).certificate
        assert x509.load_der_x509_certificate(soft.state.euicc_cert).issuer == pkiset.eum(curve).certificate.subject
        assert pki.ci_pkid(ci) in soft.isdr.ci_pkids_signing
    finally:
        soft.close()


def test_confirmation_code(smdp, euicc, es9):
    soft, transport = euicc
    code = order(smdp, "MID-CC", confirmation_code="2468")
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-CC", cc="2468")
        expected = hashlib.sha256(hashlib.sha256(b"2468").digest() + bound.transaction_id).digest()
        assert bound.prepared.hash_cc == expected
        pir = es10b.load_bound_profile_package(client, bound.bpp)
        assert pir.success
        assert soft.state.profile(ICCID).state == "disabled"
    assert code.endswith("MID-CC")


def test_metadata_fields_and_fallback_allowed(smdp, euicc, es9):
    soft, transport = euicc
    order(smdp, "MID-FB", fallback=True)
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-FB")
        assert es10b.load_bound_profile_package(client, bound.bpp).success
    installed = soft.state.profile(ICCID)
    assert installed.fallback_allowed is True and installed.profile_class == "operational"
    assert installed.service_provider_name == "sgp32-hil"


def test_same_otpk_reused_after_reset(smdp, euicc, es9):
    """SGP.22 §3.1.3.2: the BPP bound to otPK.EUICC of an interrupted attempt installs in a new session
    because the eUICC kept the one-time key pair across the reset."""
    soft, transport = euicc
    order(smdp, "MID-RETRY")
    with Es10Client(transport) as client:
        first = bind(client, es9, "MID-RETRY")
    transport.reset()
    assert soft.state.download_otpk == first.prepared.euicc_otpk
    with Es10Client(transport) as client:
        second = bind(client, es9, "MID-RETRY")
        assert asn1.decode("SmdpSigned2", second.accepted.smdp_signed2)["bppEuiccOtpk"] == first.prepared.euicc_otpk
        assert second.prepared.euicc_otpk == first.prepared.euicc_otpk
        assert es10b.load_bound_profile_package(client, second.bpp).success
    assert soft.state.download_otpk == b""


# ------------------------------------------------------------------------------------------------
# AuthenticateServer errors


def server_request(client: Es10Client, dp_auth: pki.Credential, *, pkid: bytes, challenge: bytes | None = None,
                   cert: bytes | None = None, tamper: bool = False):
    """An AuthenticateServer built and signed like the SM-DP+ does (SGP.22 §5.6.1)."""
    issued = client.get_euicc_challenge()
    signed1 = asn1.encode("ServerSigned1", {
        "transactionId": b"\x11" * 16,
        "euiccChallenge": challenge if challenge is not None else issued,
        "serverAddress": "smdp.example.com",
        "serverChallenge": b"\x22" * 16,
    })
    signature = dp_auth.sign(signed1)
    if tamper:
        signature = bytes([signature[0] ^ 0x01]) + signature[1:]
    return es10b.authenticate_server(client, signed1, signature, pkid, cert or dp_auth.der, es10b.CtxParams1("MID"))


@pytest.fixture
def client(euicc):
    _, transport = euicc
    with Es10Client(transport) as c:
        yield c


def auth_error(result: es10b.AuthenticateServerResult) -> int:
    assert not result.ok
    assert result.transaction_id == b"\x11" * 16
    return result.error_code


def test_authenticate_server_ok_is_signed_over_euicc_signed1(pkiset, client, euicc):
    soft, _ = euicc
    ci = pkiset.ci()
    result = server_request(client, pkiset.dp_auth(), pkid=pki.ci_pkid(ci.certificate))
    assert result.ok and result.kind == "authenticateResponseOk"
    signed = asn1.euicc_signed1(result.der)
    cert = x509.load_der_x509_certificate(soft.state.euicc_cert)
    assert pki.verify_plain(cert.public_key(), signed.data, signed.signature)
    value = asn1.decode("SGP32-EuiccSigned1", signed.data)
    assert (value["serverAddress"], value["serverChallenge"]) == ("smdp.example.com", b"\x22" * 16)
    assert value["ctxParams1"][1]["matchingId"] == "MID"
    assert soft.isdr.session.download.transaction_id == b"\x11" * 16


def test_authenticate_server_errors(pkiset, foreign_pki, client, euicc):
    soft, transport = euicc
    pkid = pki.ci_pkid(pkiset.ci().certificate)
    assert auth_error(server_request(client, foreign_pki.dp_auth(), pkid=pkid)) == euicc_download.INVALID_CERTIFICATE
    assert auth_error(server_request(client, pkiset.dp_auth(), pkid=pkid,
                                     cert=pkiset.dp_pb().der)) == euicc_download.INVALID_CERTIFICATE
    assert auth_error(server_request(client, pkiset.dp_auth(), pkid=pkid, tamper=True)) == euicc_download.INVALID_SIGNATURE
    assert auth_error(server_request(client, pkiset.dp_auth(), pkid=pkid,
                                     challenge=b"\x00" * 16)) == euicc_download.EUICC_CHALLENGE_MISMATCH
    assert auth_error(server_request(client, pkiset.dp_auth(), pkid=b"\x01" * 20)) == euicc_download.CI_PK_UNKNOWN
    assert soft.isdr.session.download is None


def test_authenticate_server_without_challenge(pkiset, client, euicc):
    pkid = pki.ci_pkid(pkiset.ci().certificate)
    assert server_request(client, pkiset.dp_auth(), pkid=pkid).ok
    signed1 = asn1.encode("ServerSigned1", {"transactionId": b"\x11" * 16, "euiccChallenge": b"\x00" * 16,
                                            "serverAddress": "smdp.example.com", "serverChallenge": b"\x22" * 16})
    replay = es10b.authenticate_server(client, signed1, pkiset.dp_auth().sign(signed1), pkid,
                                       pkiset.dp_auth().der, es10b.CtxParams1("MID"))
    assert auth_error(replay) == euicc_download.NO_SESSION_CONTEXT


# ------------------------------------------------------------------------------------------------
# PrepareDownload errors


def test_prepare_download_errors(smdp, euicc, es9, foreign_pki, pkiset):
    soft, transport = euicc
    order(smdp, "MID-PD")
    with Es10Client(transport) as client:
        init, auth = authenticate(client, es9, "MID-PD")
        accepted = es9.authenticate_client(init.transaction_id, auth.der)
        signed2, signature2, dp_pb = accepted.smdp_signed2, accepted.smdp_signature2, accepted.smdp_certificate

        def again():
            _, auth = authenticate(client, es9, "MID-PD")
            assert auth.ok

        bad_signature = signature2[:-1] + bytes([signature2[-1] ^ 0x01])
        assert es10b.prepare_download(client, signed2, bad_signature, dp_pb).error_code == euicc_download.INVALID_SIGNATURE
        assert es10b.prepare_download(client, signed2, signature2, dp_pb).error_code == euicc_download.NO_SESSION_CONTEXT
        assert soft.isdr.session.download is None
        # a session of another transaction: the SM-DP+ signature no longer covers this euiccSignature1
        again()
        assert es10b.prepare_download(client, signed2, signature2, dp_pb).error_code == euicc_download.INVALID_SIGNATURE
        again()
        foreign = foreign_pki.dp_pb()
        assert es10b.prepare_download(client, signed2, foreign.sign(signed2), foreign.der).error_code \
            == euicc_download.INVALID_CERTIFICATE
        again()
        assert es10b.prepare_download(client, signed2, signature2, pkiset.dp_auth().der).error_code \
            == euicc_download.INVALID_CERTIFICATE


def test_prepare_download_transaction_and_cc_checks(pkiset, client, euicc):
    """smdpSigned2 signed with the real CERT.DPpb key over the eUICC's euiccSignature1."""
    soft, _ = euicc
    pkid = pki.ci_pkid(pkiset.ci().certificate)
    dp_pb = pkiset.dp_pb()

    def attempt(transaction_id: bytes, cc_required: bool, hash_cc: bytes | None = None):
        auth = server_request(client, pkiset.dp_auth(), pkid=pkid)
        signature1 = asn1.euicc_signed1(auth.der).signature_tlv
        signed2 = asn1.encode("SmdpSigned2", {"transactionId": transaction_id, "ccRequiredFlag": cc_required})
        return es10b.prepare_download(client, signed2, dp_pb.sign(signed2 + signature1), dp_pb.der, hash_cc)

    assert attempt(b"\x99" * 16, False).error_code == euicc_download.INVALID_TRANSACTION_ID_DOWNLOAD
    assert attempt(b"\x11" * 16, True).error_code == euicc_download.UNDEFINED_ERROR
    ok = attempt(b"\x11" * 16, True, b"\x42" * 32)
    assert ok.ok and ok.hash_cc == b"\x42" * 32 and len(ok.euicc_otpk) == 65
    signed = asn1.euicc_signed2(ok.der)
    cert = x509.load_der_x509_certificate(soft.state.euicc_cert)
    assert not pki.verify_plain(cert.public_key(), signed.data, signed.signature)
    smdp_sig = asn1.smdp_signed2(es10b_request_of(client)).signature_tlv
    assert pki.verify_plain(cert.public_key(), signed.data + smdp_sig, signed.signature)
    assert on_disk(soft).download_otpk == ok.euicc_otpk


def es10b_request_of(client: Es10Client) -> bytes:
    """The last PrepareDownload command the client sent."""
    return next(e.request for e in reversed(client.exchanges) if e.request[:2] == b"\xbf\x21")


# ------------------------------------------------------------------------------------------------
# LoadBoundProfilePackage failures and interruptions


def tamper(bpp: bytes, container: bytes, index: int) -> bytes:
    """Flip the last byte (the MAC) of element ``index`` inside ``container`` of the BPP."""
    top = asn1.parse_single(bpp)
    part = next(p for p in top.children() if p.tag == container)
    element = part.children()[index]
    pos = element.end - 1
    return bpp[:pos] + bytes([bpp[pos] ^ 0x01]) + bpp[pos + 1:]


@pytest.mark.parametrize("container, index, command", [
    (b"\xa3", 0, "loadProfileElements"),
    (b"\xa1", 0, "storeMetadata"),
    (b"\xa0", 0, "configureISDP"),
])
def test_tampered_segment_gives_security_error_and_no_profile(smdp, euicc, es9, pkiset, container, index, command):
    soft, transport = euicc
    order(smdp, "MID-TAMPER")
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-TAMPER")
        pir = es10b.load_bound_profile_package(client, tamper(bound.bpp, container, index))
        assert not pir.success
        assert (pir.bpp_command_id, pir.error_reason) == (command, "scp03tSecurityError")
        assert pir.segments_sent < pir.segments_total
        verify_pir(pir, soft, pkiset)
        assert soft.state.profile(ICCID) is None and on_disk(soft).profile(ICCID) is None
        pending = [n for n in client.retrieve_notifications_list() if n.seq_number == pir.seq_number]
        assert len(pending) == 1 and pending[0].der == pir.der
        assert soft.isdr.session.download is None
        with pytest.raises(ApduError) as exc:
            client.session.store_data(b"\x86\x01\x00", function="stray segment")
        assert exc.value.sw == euicc_download.SW_NO_SESSION
    assert smdp.store.profile_state(ICCID) == ProfileState.DOWNLOADED


def test_failed_install_result_is_delivered(smdp, euicc, pkiset):
    """ICCID already on the eUICC: storeMetadata fails, the error result is delivered like a success."""
    soft, transport = euicc
    code = order(smdp, "MID-DUP-1")
    with Es10Client(transport) as client:
        assert download_profile(client, code, ca=smdp.ca_file).success
        smdp.store.add_order("MID-DUP-2", iccid=ICCID)
        again = download_profile(client, f"LPA:1${smdp.service.address}$MID-DUP-2", ca=smdp.ca_file)
        assert not again.success
        assert (again.installation.bpp_command_id, again.installation.error_reason) == (
            "storeMetadata", "installFailedDueToIccidAlreadyExistsOnEuicc")
        assert again.error.kind == "install"
        assert again.notification.delivered and again.notification.removed
    assert [p.iccid for p in soft.state.profiles].count(ICCID) == 1
    assert smdp.store.notifications()[-1]["result"] == "error"


def test_profile_header_iccid_must_match_metadata(smdp, euicc, es9):
    soft, transport = euicc
    smdp.store.add_order("MID-MISMATCH", iccid=OTHER_ICCID, package=PACKAGE, imsi=IMSI)
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-MISMATCH")
        pir = es10b.load_bound_profile_package(client, bound.bpp)
        assert (pir.bpp_command_id, pir.error_reason) == ("loadProfileElements", "installFailedDueToDataMismatch")
        assert pir.segments_sent == pir.segments_total
    assert soft.state.profiles and all(p.iccid not in (ICCID, OTHER_ICCID) for p in soft.state.profiles)


def send_segments(client: Es10Client, bpp: bytes, count: int) -> list[bytes]:
    segments = es10b.bpp_segments(bpp)
    return [client.session.store_data(s.data, function=s.part) for s in segments[:count]]


def assert_interrupted(soft: SoftEuicc, pkiset, transaction_id: bytes, command: str, iccid: str | None) -> None:
    """The install notification reporting an interrupted BPP load (SGP.22 §5.7.6), persisted."""
    assert on_disk(soft).pending_install is None
    note = on_disk(soft).notifications[-1]
    pir = es10b.ProfileInstallationResult.from_der(note.der)
    assert (pir.transaction_id, pir.bpp_command_id, pir.error_reason, pir.iccid) == (
        transaction_id, command, "installFailedDueToInterruption", iccid)
    verify_pir(pir, soft, pkiset)


def test_reset_mid_download_leaves_nothing(smdp, euicc, es9, pkiset):
    soft, transport = euicc
    order(smdp, "MID-RESET")
    before = {p.iccid for p in soft.state.profiles}
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-RESET")
        total = len(es10b.bpp_segments(bound.bpp))
        assert send_segments(client, bound.bpp, total - 1) == [b""] * (total - 1)
    transport.reset()
    assert soft.isdr.session.download is None
    assert {p.iccid for p in on_disk(soft).profiles} == before
    assert_interrupted(soft, pkiset, bound.transaction_id, "loadProfileElements", ICCID)
    with Es10Client(transport) as client:
        last = es10b.bpp_segments(bound.bpp)[-1]
        with pytest.raises(ApduError) as exc:
            client.session.store_data(last.data, function="after reset")
        assert exc.value.sw == euicc_download.SW_NO_SESSION
    assert {p.iccid for p in soft.state.profiles} == before


def test_cancel_session_mid_load(smdp, euicc, es9, pkiset):
    soft, transport = euicc
    order(smdp, "MID-CANCEL")
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-CANCEL")
        send_segments(client, bound.bpp, 4)
        cancelled = es10b.cancel_session(client, bound.transaction_id, "loadBppExecutionError")
        assert cancelled.ok and cancelled.reason == "loadBppExecutionError"
        assert cancelled.smdp_oid == euicc_download.smdp_oid(pkiset.dp_auth().certificate)
        signed = asn1.euicc_cancel_session_signed(cancelled.der)
        cert = x509.load_der_x509_certificate(soft.state.euicc_cert)
        assert pki.verify_plain(cert.public_key(), signed.data, signed.signature)
        es9.cancel_session(bound.transaction_id, cancelled.der)
        repeat = es10b.cancel_session(client, bound.transaction_id, "undefinedReason")
        assert (repeat.ok, repeat.error_name) == (False, "invalidTransactionId")
    assert soft.state.profile(ICCID) is None and soft.isdr.session.download is None
    notes = len(soft.state.notifications)
    transport.reset()
    assert on_disk(soft).pending_install is None and len(soft.state.notifications) == notes


def test_cancel_session_errors(client, pkiset):
    assert es10b.cancel_session(client, b"\x01", "postponed").error_code == euicc_download.CANCEL_INVALID_TRANSACTION_ID
    assert server_request(client, pkiset.dp_auth(), pkid=pki.ci_pkid(pkiset.ci().certificate)).ok
    other = es10b.cancel_session(client, b"\x12" * 16, "postponed")
    assert other.error_code == euicc_download.CANCEL_INVALID_TRANSACTION_ID
    assert es10b.cancel_session(client, b"\x11" * 16, "postponed").ok


def test_state_file_never_holds_half_installed_profile(pkiset, smdp, tmp_path, es9):
    """Kill/restart between any two BPP commands: the state on disk has the profile only after the
    last one, and a reopened eUICC has no session to continue."""
    state_dir = tmp_path / "euicc"
    soft, transport = in_process(state_dir, pkiset)
    order(smdp, "MID-KILL")
    try:
        with Es10Client(transport) as client:
            bound = bind(client, es9, "MID-KILL")
            segments = es10b.bpp_segments(bound.bpp)
            for n, segment in enumerate(segments, 1):
                response = client.session.store_data(segment.data, function=segment.part)
                disk = StateStore(state_dir).load()
                assert (disk.profile(ICCID) is not None) == (n == len(segments)), n
                assert bool(response) == (n == len(segments))
        soft.close()
        soft, transport = in_process(state_dir, pkiset)
        assert soft.state.profile(ICCID).state == "disabled"
        assert soft.isdr.session.download is None
    finally:
        soft.close()


def test_reopened_euicc_mid_download_has_no_session(pkiset, smdp, tmp_path, es9):
    state_dir = tmp_path / "euicc"
    soft, transport = in_process(state_dir, pkiset)
    order(smdp, "MID-REOPEN")
    try:
        with Es10Client(transport) as client:
            bound = bind(client, es9, "MID-REOPEN")
            send_segments(client, bound.bpp, 2)
            assert on_disk(soft).pending_install.bpp_command == euicc_download.STORE_METADATA
        soft.close()
        soft, transport = in_process(state_dir, pkiset)
        assert soft.state.profile(ICCID) is None
        assert_interrupted(soft, pkiset, bound.transaction_id, "storeMetadata", None)
        with Es10Client(transport) as client:
            retry = bind(client, es9, "MID-REOPEN")
            assert retry.prepared.euicc_otpk == bound.prepared.euicc_otpk
            assert es10b.load_bound_profile_package(client, retry.bpp).success
        assert soft.state.profile(ICCID).state == "disabled"
    finally:
        soft.close()


def test_new_authenticate_server_drops_the_load(smdp, euicc, es9, pkiset):
    soft, transport = euicc
    order(smdp, "MID-NEW")
    with Es10Client(transport) as client:
        bound = bind(client, es9, "MID-NEW")
        send_segments(client, bound.bpp, 3)
        _, auth = authenticate(client, es9, "MID-NEW")
        assert auth.ok
        assert soft.isdr.session.download.phase == "authenticated"
    assert soft.state.profile(ICCID) is None
    assert_interrupted(soft, pkiset, bound.transaction_id, "storeMetadata", None)


def test_transaction_id_outside_its_size_is_malformed(client, pkiset):
    smdp_signed2 = asn1.encode("SmdpSigned2", {"transactionId": b"\x01" * 17, "ccRequiredFlag": False},
                               check_constraints=False)
    command = asn1.encode("PrepareDownloadRequest", {
        "smdpSigned2": asn1.decode("SmdpSigned2", smdp_signed2), "smdpSignature2": bytes(64),
        "smdpCertificate": asn1.decode("Certificate", pkiset.dp_pb().der)},
        check_constraints=False)
    with pytest.raises(ApduError) as exc:
        client.session.store_data(command, function="PrepareDownload")
    assert exc.value.sw == 0x6A80


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=st.sampled_from([0xBF38, 0xBF21, 0xBF36, 0xBF41, 0xA0, 0xA1, 0xA2, 0xA3, 0x86, 0x87, 0x88]),
       body=st.binary(max_size=200), prepared=st.booleans())
def test_random_download_commands_never_crash(pkiset, client, euicc, tag, body, prepared):
    soft, _ = euicc
    if prepared:
        auth = server_request(client, pkiset.dp_auth(), pkid=pki.ci_pkid(pkiset.ci().certificate))
        signature1 = asn1.euicc_signed1(auth.der).signature_tlv
        signed2 = asn1.encode("SmdpSigned2", {"transactionId": b"\x11" * 16, "ccRequiredFlag": False})
        dp_pb = pkiset.dp_pb()
        assert es10b.prepare_download(client, signed2, dp_pb.sign(signed2 + signature1), dp_pb.der).ok
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    length = len(body)
    command = head + (bytes([length]) if length < 0x80 else bytes([0x81, length])) + body
    try:
        client.session.store_data(command, function="fuzz")
    except ApduError as exc:
        assert exc.sw in (0x6A80, 0x6A88), command.hex()
    assert soft.state.profile(ICCID) is None
