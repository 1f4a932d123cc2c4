"""Unit tests for sgp32hil.harness.pki (SGP.22 v2.5 §4.5.2 certificate profiles and validation)."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import threading

import asn1tools
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from sgp32hil.harness import pki
from sgp32hil.harness.pki import ChainError, ChainReason, Curve, Role, RspOid

CURVES = [Curve.NIST, Curve.BRP]
UTC = dt.UTC


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki")
    return out, pki.generate(out, smdp_host=("smdp.test", "127.0.0.1"), eim_host="eim.test")


@pytest.fixture(scope="session")
def pset(pki_dir):
    return pki_dir[1]


@pytest.fixture(scope="session")
def foreign():
    return pki.generate(curves=("nist",))


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def policies(cert):
    return [p.policy_identifier for p in ext(cert, x509.CertificatePolicies).value]


def name(cn, org="X"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


# ---------------------------------------------------------------------------------------------
# Profiles


def test_generation_is_fast():
    import time

    start = time.perf_counter()
    pki.generate()
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("curve", CURVES)
def test_all_certificates_on_the_curve_with_ecdsa_sha256(pset, curve):
    expected = "secp256r1" if curve is Curve.NIST else "brainpoolP256r1"
    for role in (Role.CI, Role.EUM, Role.EUICC, Role.DP_AUTH, Role.DP_PB, Role.DP_TLS, Role.EIM, Role.EIM_TLS):
        cred = pset.require(role, curve)
        assert cred.certificate.public_key().curve.name == expected
        assert cred.certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert cred.certificate.version is x509.Version.v3
        assert cred.private_key is not None
        assert pki.public_key_bytes(cred.private_key) == cred.public_key_bytes


@pytest.mark.parametrize("curve", CURVES)
def test_ci_profile(pset, curve):
    cert = pset.ci(curve).certificate
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    cp = ext(cert, x509.CertificatePolicies)
    assert cp.critical and policies(cert) == [RspOid.ROLE_CI]
    assert policies(cert)[0].dotted_string == "2.23.146.1.2.1.0"
    assert ext(cert, x509.SubjectAlternativeName).value == x509.SubjectAlternativeName(
        [x509.RegisteredID(RspOid.TEST_CI_RID)]
    )
    assert ext(cert, x509.CRLDistributionPoints).value
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.AuthorityKeyIdentifier)
    assert pki.ci_pkid(cert) == ext(cert, x509.SubjectKeyIdentifier).value.digest
    assert len(pki.ci_pkid(cert)) == 20


@pytest.mark.parametrize("curve", CURVES)
def test_eum_profile_with_permitted_eins(pset, curve):
    eum, ci = pset.eum(curve).certificate, pset.ci(curve).certificate
    bc = ext(eum, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(eum, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and not ku.value.digital_signature
    assert ext(eum, x509.CertificatePolicies).critical
    assert [o.dotted_string for o in policies(eum)] == ["2.23.146.1.2.1.2"]
    assert ext(eum, x509.AuthorityKeyIdentifier).value.key_identifier == pki.ci_pkid(ci)
    nc = ext(eum, x509.NameConstraints)
    assert nc.critical and nc.value.excluded_subtrees is None
    (subtree,) = nc.value.permitted_subtrees
    assert isinstance(subtree, x509.DirectoryName)
    assert subtree.value.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "89049032"
    assert (
        subtree.value.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == eum.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    )
    assert pki.permitted_eins(eum) == ["89049032"]
    assert ext(eum, x509.CRLDistributionPoints).value


@pytest.mark.parametrize("curve", CURVES)
def test_euicc_profile(pset, curve):
    cred, eum = pset.euicc(curve), pset.eum(curve)
    cert = cred.certificate
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ext(cert, x509.CertificatePolicies).critical
    assert [o.dotted_string for o in policies(cert)] == ["2.23.146.1.2.1.1"]
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == eum.ski
    assert cert.issuer == eum.certificate.subject
    assert cred.eid == pki.eid_of(cert) == pki.make_eid("89049032", 1)
    assert pki.eid_is_valid(cred.eid)
    assert cert.not_valid_after_utc == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert cred.chain == (eum.certificate, pset.ci(curve).certificate)
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.BasicConstraints)


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize("role,oid", [(Role.DP_AUTH, "2.23.146.1.2.1.4"), (Role.DP_PB, "2.23.146.1.2.1.5")])
def test_dp_signing_profiles(pset, curve, role, oid):
    cert = pset.require(role, curve).certificate
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ext(cert, x509.CertificatePolicies).critical
    assert [o.dotted_string for o in policies(cert)] == [oid]
    assert list(ext(cert, x509.SubjectAlternativeName).value) == [x509.RegisteredID(RspOid.TEST_SMDP_RID)]
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == pset.ci(curve).ski
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest == pset.require(role, curve).ski
    assert ext(cert, x509.CRLDistributionPoints).value


@pytest.mark.parametrize("curve", CURVES)
def test_dp_tls_profile(pset, curve):
    cert = pset.dp_tls(curve).certificate
    assert [o.dotted_string for o in policies(cert)] == ["2.23.146.1.2.1.3"]
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert eku.critical and ExtendedKeyUsageOID.SERVER_AUTH in eku.value
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["smdp.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.RegisteredID) == [RspOid.TEST_SMDP_RID]
    assert pset.smdp_address == "smdp.test"


@pytest.mark.parametrize("curve", CURVES)
def test_eim_profiles(pset, curve):
    sig, tls = pset.eim(curve).certificate, pset.eim_tls(curve).certificate
    assert ext(sig, x509.KeyUsage).value.digital_signature
    assert sig.issuer == pset.ci(curve).certificate.subject
    assert ext(tls, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["eim.test"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in ext(tls, x509.ExtendedKeyUsage).value
    assert pset.eim_address == "eim.test"


def test_operator_client_and_tls_ca(pset):
    ca, op = pset.tls_ca(), pset.operator_tls()
    assert ext(ca.certificate, x509.BasicConstraints).value.ca
    assert list(ext(op.certificate, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    pki.verify_chain(op, [], [ca], role=Role.OPERATOR_TLS)


def test_ci_pkids_and_lookup(pset):
    assert pset.ci_pkids == [pki.ci_pkid(pset.ci(c).certificate) for c in CURVES]
    assert pset.ci_by_pkid(pset.ci_pkids[1]) is pset.ci(Curve.BRP)
    assert pset.ci_by_pkid(b"\x00" * 20) is None
    assert pset.curves == (Curve.NIST, Curve.BRP)


# ---------------------------------------------------------------------------------------------
# EID


@pytest.mark.parametrize(
    "eid", ["89049032123451234512345678901235", "89882119900000000000000000001654", pki.make_eid("8904", 7)]
)
def test_known_valid_eids(eid):
    assert pki.eid_is_valid(eid)


def test_make_eid_reproduces_published_sample():
    assert pki.make_eid("89049032", 1234512345123456789012) == "89049032123451234512345678901235"
    assert pki.make_eid("89882119", 900000000000000000001600 // 100) == "89882119900000000000000000001654"


@pytest.mark.parametrize(
    "eid",
    ["89049032123451234512345678901234", "8904903212345123451234567890123", "890490321234512345123456789012355",
     "8904903212345123451234567890123A", "", None],
)
def test_invalid_eids(eid):
    assert not pki.eid_is_valid(eid)


@pytest.mark.parametrize("prefix,serial", [("89A", 1), ("", 1), ("89049032", -1), ("89049032", 10**22)])
def test_make_eid_rejects_bad_input(prefix, serial):
    with pytest.raises(ValueError):
        pki.make_eid(prefix, serial)


# ---------------------------------------------------------------------------------------------
# Signatures


@pytest.mark.parametrize("curve", CURVES)
def test_plain_signature_round_trip(pset, curve):
    cred = pset.dp_auth(curve)
    data = b"serverSigned1"
    sig = cred.sign(data)
    assert len(sig) == 64
    assert cred.verify(data, sig)
    assert pki.verify_plain(cred.certificate, data, sig)
    assert not pki.verify_plain(cred.certificate, data + b"x", sig)
    assert not pki.verify_plain(cred.certificate, data, sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not pki.verify_plain(cred.certificate, data, sig[:63])
    der = pki.plain_to_der(sig)
    cred.public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    assert pki.der_to_plain(der) == sig


def test_der_plain_conversion_pads_short_integers():
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(5, 1 << 200)
    plain = pki.der_to_plain(der)
    assert plain[:32] == bytes(31) + b"\x05" and len(plain) == 64
    assert pki.plain_to_der(plain) == der
    with pytest.raises(ValueError):
        pki.plain_to_der(b"\x01\x02\x03")


@pytest.mark.parametrize("curve", CURVES)
def test_keypair_ecka_and_public_point(curve):
    a, b = pki.KeyPair.generate(curve), pki.KeyPair.generate(curve.value.lower())
    assert a.curve is curve
    assert len(a.public_bytes) == 65 and a.public_bytes[0] == 4
    assert a.exchange(b.public_bytes) == b.exchange(a.public_bytes)
    assert pki.verify_plain(a, b"m", a.sign(b"m"))


# ---------------------------------------------------------------------------------------------
# Chain validation: success


@pytest.mark.parametrize("curve", CURVES)
def test_euicc_chain_validates(pset, curve):
    euicc, eum, ci = pset.euicc(curve), pset.eum(curve), pset.ci(curve)
    result = pki.verify_chain(euicc.der, [eum.der], [c.der for c in (pset.ci(Curve.NIST), pset.ci(Curve.BRP))],
                              role="EUICC", eid=euicc.eid)
    assert result.role is Role.EUICC and result.eid == euicc.eid and result.curve is curve
    assert result.path == (euicc.certificate, eum.certificate, ci.certificate)
    assert result.ci == ci.certificate and result.ci_pkid == ci.ski


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize(
    "role", [Role.CI, Role.EUM, Role.DP_AUTH, Role.DP_PB, Role.DP_TLS, Role.EIM, Role.EIM_TLS]
)
def test_every_role_validates(pset, curve, role):
    result = pset.verify(pset.require(role, curve), role=role)
    assert result.role is role
    assert result.ci == pset.ci(curve).certificate


def test_role_is_detected_without_asking(pset):
    assert pset.verify(pset.euicc(), [pset.eum()]).role is Role.EUICC
    assert pset.verify(pset.dp_pb()).role is Role.DP_PB
    assert pset.verify(pset.eim()).role is None


def test_issue_further_euicc(pset):
    eid = pki.make_eid("89049032", 4242)
    cred = pset.issue_euicc(eid, "brp")
    assert pset.verify(cred, [pset.eum(Curve.BRP)], role=Role.EUICC, eid=eid).eid == eid
    with pytest.raises(ValueError, match="outside"):
        pset.issue_euicc(pki.make_eid("89049033", 1))
    with pytest.raises(ValueError, match="check digits"):
        pset.issue_euicc("89049032000000000000000000000000")


# ---------------------------------------------------------------------------------------------
# Chain validation: every failure reason


def reason_of(fn, *args, **kwargs) -> ChainReason:
    with pytest.raises(ChainError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value.reason


def test_foreign_ci(pset, foreign):
    assert reason_of(pset.verify, foreign.euicc(), [foreign.eum()]) is ChainReason.UNKNOWN_CI
    assert reason_of(pset.verify, foreign.dp_auth(), role=Role.DP_AUTH) is ChainReason.UNKNOWN_CI
    assert reason_of(pset.verify, foreign.ci(), role=Role.CI) is ChainReason.UNKNOWN_CI
    assert reason_of(pki.verify_chain, pset.dp_auth(), [], []) is ChainReason.UNKNOWN_CI


def test_missing_intermediate_is_unknown_issuer(pset):
    assert reason_of(pset.verify, pset.euicc()) is ChainReason.UNKNOWN_CI


def test_foreign_ci_with_same_name_and_no_aki_fails_signature(pset):
    ci = pset.ci()
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("impostor"))
        .issuer_name(ci.certificate.subject)
        .public_key(impostor_key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime.now(UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(UTC) + dt.timedelta(days=1))
        .sign(impostor_key, hashes.SHA256())
    )
    assert reason_of(pset.verify, cert) is ChainReason.BAD_SIGNATURE


@pytest.mark.parametrize("curve", CURVES)
def test_tampered_signature(pset, curve):
    der = bytearray(pset.euicc(curve).der)
    der[-1] ^= 0x01
    assert reason_of(pset.verify, bytes(der), [pset.eum(curve)]) is ChainReason.BAD_SIGNATURE


def test_signed_by_wrong_key_with_right_aki(pset):
    forged = pki.issue(Role.DP_AUTH, Curve.NIST, name("forged"), pset.ci(),
                       signing_key=ec.generate_private_key(ec.SECP256R1()))
    assert forged.aki == pset.ci().ski
    assert reason_of(pset.verify, forged, role=Role.DP_AUTH) is ChainReason.BAD_SIGNATURE


def test_tampered_tbs_is_bad_signature(pset):
    cred = pset.dp_pb()
    der = bytearray(cred.der)
    cn = b"TEST SM-DP+"
    i = der.index(cn, der.index(cn) + 1) if der.count(cn) > 1 else der.index(cn)
    der[i] ^= 0x20
    assert reason_of(pset.verify, bytes(der), role=Role.DP_PB) is ChainReason.BAD_SIGNATURE


def test_expired_and_not_yet_valid(pset):
    later = dt.datetime(2100, 1, 1, tzinfo=UTC)
    assert reason_of(pset.verify, pset.dp_auth(), at=later) is ChainReason.EXPIRED
    earlier = dt.datetime(2000, 1, 1)
    assert reason_of(pset.verify, pset.dp_auth(), at=earlier) is ChainReason.NOT_YET_VALID
    old = pki.issue(Role.DP_AUTH, Curve.NIST, name("old"), pset.ci(),
                    not_before=dt.datetime(2015, 1, 1, tzinfo=UTC), not_after=dt.datetime(2016, 1, 1, tzinfo=UTC))
    assert reason_of(pset.verify, old, role=Role.DP_AUTH) is ChainReason.EXPIRED


def test_expired_intermediate(pset):
    eum = pset.eum()
    old_eum = pki.issue(Role.EUM, Curve.NIST, eum.certificate.subject, pset.ci(), eins=["89049032"],
                        not_before=dt.datetime(2015, 1, 1, tzinfo=UTC), not_after=dt.datetime(2016, 1, 1, tzinfo=UTC))
    euicc = pki._issue_euicc(old_eum, pki.make_eid("89049032", 9))
    assert reason_of(pset.verify, euicc, [old_eum]) is ChainReason.EXPIRED


def test_wrong_role(pset):
    assert reason_of(pset.verify, pset.dp_auth(), role=Role.DP_PB) is ChainReason.WRONG_ROLE
    assert reason_of(pset.verify, pset.dp_pb(), role="DPauth") is ChainReason.WRONG_ROLE
    assert reason_of(pset.verify, pset.euicc(), [pset.eum()], role=Role.DP_AUTH) is ChainReason.WRONG_ROLE
    assert reason_of(pset.verify, pset.dp_tls(), role=Role.EUICC) is ChainReason.WRONG_ROLE
    assert reason_of(pset.verify, pset.eum(), role=Role.EIM) is ChainReason.WRONG_ROLE
    assert reason_of(pset.verify, pset.dp_auth(), eid=pset.euicc().eid) is ChainReason.WRONG_ROLE


def test_euicc_issued_by_ci_directly_is_wrong_role(pset):
    eid = pki.make_eid("89049032", 5)
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, eid)])
    cred = pki.issue(Role.EUICC, Curve.NIST, subject, pset.ci())
    assert reason_of(pset.verify, cred, role=Role.EUICC) is ChainReason.WRONG_ROLE


def test_eid_outside_eum_range(pset):
    eum = pset.eum()
    org = eum.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    outside = pki.make_eid("89049033", 1)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, outside)])
    cred = pki.issue(Role.EUICC, Curve.NIST, subject, eum)
    assert reason_of(pset.verify, cred, [eum], role=Role.EUICC) is ChainReason.EID_OUT_OF_RANGE


def test_eid_with_other_organization_is_out_of_range(pset):
    eum = pset.eum()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Someone Else"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, pki.make_eid("89049032", 2))])
    cred = pki.issue(Role.EUICC, Curve.NIST, subject, eum)
    assert reason_of(pset.verify, cred, [eum]) is ChainReason.EID_OUT_OF_RANGE


def test_eum_without_permitted_eins_rejects_euicc(pset):
    eum = pki.issue(Role.EUM, Curve.NIST, name("bare EUM"), pset.ci())
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, pki.make_eid("89049032", 3))])
    cred = pki.issue(Role.EUICC, Curve.NIST, subject, eum)
    assert reason_of(pset.verify, cred, [eum]) is ChainReason.EID_OUT_OF_RANGE


def test_eid_mismatch_and_invalid_eid(pset):
    assert reason_of(pset.verify, pset.euicc(), [pset.eum()], eid=pki.make_eid("89049032", 2)) is ChainReason.EID_MISMATCH
    eum = pset.eum()
    org = eum.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    bad = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                     x509.NameAttribute(NameOID.SERIAL_NUMBER, "89049032123451234512345678901234")])
    cred = pki.issue(Role.EUICC, Curve.NIST, bad, eum)
    assert reason_of(pset.verify, cred, [eum]) is ChainReason.INVALID_EID


def test_permitted_eins_v3_extension(pset):
    codec = asn1tools.compile_string("M DEFINITIONS ::= BEGIN P ::= SEQUENCE OF PrintableString END", "der")
    value = codec.encode("P", ["89049099", "890491"])
    ci = pset.ci()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("v3 EUM"))
        .issuer_name(ci.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(dt.datetime.now(UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(UTC) + dt.timedelta(days=10))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ci.ski, None, None), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(RspOid.ROLE_EUM_V3, None)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(RspOid.PERMITTED_EINS, value), critical=True)
        .sign(ci.private_key, hashes.SHA256())
    )
    eum = pki.Credential(Role.EUM, Curve.NIST, cert, key)
    assert pki.permitted_eins(cert) == ["89049099", "890491"]
    inside = pki._issue_euicc(eum, pki.make_eid("890491", 77))
    assert pset.verify(inside, [eum], role=Role.EUICC).eid == inside.eid
    outside = pki.issue(Role.EUICC, Curve.NIST,
                        x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, pki.make_eid("89049032", 1))]), eum)
    assert reason_of(pset.verify, outside, [eum]) is ChainReason.EID_OUT_OF_RANGE


def test_non_ca_issuer(pset):
    dp = pset.dp_auth()
    child = pki.issue(Role.DP_PB, Curve.NIST, name("child"), dp)
    assert reason_of(pset.verify, child, [dp]) is ChainReason.NOT_A_CA


def test_path_length_of_eum_is_enforced(pset):
    eum = pset.eum()
    sub = pki.issue(Role.EUM, Curve.NIST, name("sub EUM", "SGP32HIL Test EUM"), eum, eins=["89049032"])
    euicc = pki._issue_euicc(sub, pki.make_eid("89049032", 11))
    assert reason_of(pset.verify, euicc, [sub, eum]) is ChainReason.NOT_A_CA


def test_unsupported_curve(pset):
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("p384"))
        .issuer_name(pset.ci().certificate.subject)
        .public_key(key.public_key())
        .serial_number(3)
        .not_valid_before(dt.datetime.now(UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(UTC) + dt.timedelta(days=1))
        .sign(pset.ci().private_key, hashes.SHA256())
    )
    assert reason_of(pset.verify, cert) is ChainReason.UNSUPPORTED_CURVE


def test_mixed_curves_are_malformed(pset):
    nist_key = ec.generate_private_key(ec.SECP256R1())
    cred = pki.issue(Role.DP_AUTH, Curve.NIST, name("mixed"), pset.ci(Curve.BRP), private_key=nist_key)
    assert reason_of(pset.verify, cred) is ChainReason.MALFORMED


def test_garbage_der_is_malformed(pset):
    assert reason_of(pset.verify, b"\x30\x03\x02\x01\x00") is ChainReason.MALFORMED


def test_unknown_critical_extension_is_malformed(pset):
    ci = pset.ci()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("odd"))
        .issuer_name(ci.certificate.subject)
        .public_key(key.public_key())
        .serial_number(4)
        .not_valid_before(dt.datetime.now(UTC) - dt.timedelta(days=1))
        .not_valid_after(dt.datetime.now(UTC) + dt.timedelta(days=1))
        .add_extension(x509.AuthorityKeyIdentifier(ci.ski, None, None), critical=False)
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"), critical=True)
        .sign(ci.private_key, hashes.SHA256())
    )
    assert reason_of(pset.verify, cert) is ChainReason.MALFORMED


# ---------------------------------------------------------------------------------------------
# Files: generate -> load


def test_layout_and_manifest(pki_dir):
    out, pset = pki_dir
    for rel in (
        "CertificateIssuer/CERT_CI_ECDSA_NIST.der", "CertificateIssuer/SK_CI_ECDSA_BRP.pem",
        "EUM/CERT_EUM_ECDSA_BRP.der", "eUICC/CERT_EUICC_ECDSA_NIST.der", "eUICC/SK_EUICC_ECDSA_NIST.pem",
        "DPauth/CERT_S_SM_DPauth_ECDSA_NIST.der", "DPpb/SK_S_SM_DPpb_ECDSA_BRP.pem",
        "DPtls/CERT_S_SM_DP_TLS_NIST.der", "eIM/CERT_EIM_ECDSA_NIST.der", "eIM/CERT_EIM_TLS_BRP.der",
        "TLS/CERT_TLS_CA_ECDSA_NIST.der", "TLS/CERT_OPERATOR_TLS_NIST.der",
        "tls/ca-bundle.pem", "tls/client-ca.pem", "tls/smdp-nist.chain.pem", "tls/smdp-nist.key.pem", "pki.yaml",
    ):
        assert (out / rel).is_file(), rel
    assert (out / "eUICC/SK_EUICC_ECDSA_NIST.pem").stat().st_mode & 0o077 == 0
    assert (out / "eUICC/SK_EUICC_ECDSA_NIST.pem").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    import yaml

    manifest = yaml.safe_load((out / "pki.yaml").read_text())
    assert manifest["format"] == "sgp32-hil-pki/1"
    assert manifest["ci_pkids"]["NIST"] == pset.ci_pkids[0].hex()
    roles = {(e["role"], e["curve"]) for e in manifest["credentials"]}
    assert ("EUICC", "BRP") in roles and ("OPERATOR_TLS", "NIST") in roles
    assert pset.dp_tls().cert_path == out / "DPtls/CERT_S_SM_DP_TLS_NIST.der"


def test_load_round_trip(pki_dir):
    out, pset = pki_dir
    loaded = pki.load(out)
    assert set(loaded.credentials) == set(pset.credentials)
    for key, cred in pset.credentials.items():
        other = loaded.credentials[key]
        assert other.der == cred.der
        assert other.private_key is not None and other.public_key_bytes == cred.public_key_bytes
        assert [c.public_bytes(serialization.Encoding.DER) for c in other.chain] == [
            c.public_bytes(serialization.Encoding.DER) for c in cred.chain
        ]
    assert loaded.extra == {}
    assert loaded.eum_eins == ("89049032",)
    assert loaded.smdp_address == "smdp.test" and loaded.eim_address == "eim.test"
    assert loaded.tls_server_files(Role.DP_TLS) == pset.tls_server_files(Role.DP_TLS)
    assert loaded.verify(loaded.euicc(Curve.BRP), [loaded.eum(Curve.BRP)], role=Role.EUICC).eid == pset.euicc().eid


def test_load_sgp26_style_directory_without_manifest(pki_dir, tmp_path):
    out, pset = pki_dir
    for sub in ("CertificateIssuer", "EUM", "eUICC", "DPtls"):
        shutil.copytree(out / sub, tmp_path / sub)
    (tmp_path / "eUICC/SK_EUICC_ECDSA_BRP.pem").unlink()
    old = tmp_path / "DPtls/Old_TLS_Validity/Expired 2021"
    old.mkdir(parents=True)
    shutil.copy(out / "DPtls/CERT_S_SM_DP_TLS_NIST.der", old / "CERT_S_SM_DP_TLS_NIST.der")
    shutil.copy(out / "DPauth/CERT_S_SM_DPauth_ECDSA_NIST.der", tmp_path / "CERT_S_SM_DP2auth_ECDSA_NIST.der")
    loaded = pki.load(tmp_path)
    assert loaded.dp_auth() is None and loaded.eim() is None and loaded.operator_tls() is None
    assert loaded.euicc(Curve.BRP).private_key is None
    assert loaded.euicc(Curve.BRP).cert_path == tmp_path / "eUICC/CERT_EUICC_ECDSA_BRP.der"
    assert loaded.dp_tls().cert_path == tmp_path / "DPtls/CERT_S_SM_DP_TLS_NIST.der"
    assert set(loaded.extra) == {
        "CERT_S_SM_DP2auth_ECDSA_NIST.der", "DPtls/Old_TLS_Validity/Expired 2021/CERT_S_SM_DP_TLS_NIST.der"
    }
    assert loaded.extra["CERT_S_SM_DP2auth_ECDSA_NIST.der"].role is Role.DP_AUTH
    assert loaded.eum_eins == ("89049032",)
    assert loaded.smdp_address == "smdp.test"
    assert loaded.tls_files == {}


def test_load_pem_only_certificate(pki_dir, tmp_path):
    out, pset = pki_dir
    (tmp_path / "CertificateIssuer").mkdir()
    shutil.copy(out / "CertificateIssuer/CERT_CI_ECDSA_NIST.pem", tmp_path / "CertificateIssuer")
    loaded = pki.load(tmp_path)
    assert loaded.ci().der == pset.ci().der and loaded.ci().private_key is None


def test_load_corrupt_certificate_names_the_file(pki_dir, tmp_path):
    out, _ = pki_dir
    shutil.copytree(out / "DPauth", tmp_path / "DPauth")
    bad = tmp_path / "DPauth/CERT_S_SM_DPauth_ECDSA_BRP.der"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(pki.PkiLoadError, match="CERT_S_SM_DPauth_ECDSA_BRP.der"):
        pki.load(tmp_path)


def test_load_corrupt_key_names_the_file(pki_dir, tmp_path):
    out, _ = pki_dir
    shutil.copytree(out / "EUM", tmp_path / "EUM")
    (tmp_path / "EUM/SK_EUM_ECDSA_NIST.pem").write_text("-----BEGIN EC PRIVATE KEY-----\nnope\n-----END EC PRIVATE KEY-----\n")
    with pytest.raises(pki.PkiLoadError, match="SK_EUM_ECDSA_NIST.pem"):
        pki.load(tmp_path)


def test_load_mismatched_key(pki_dir, tmp_path):
    out, _ = pki_dir
    shutil.copytree(out / "DPpb", tmp_path / "DPpb")
    shutil.copy(out / "DPauth/SK_S_SM_DPauth_ECDSA_NIST.pem", tmp_path / "DPpb/SK_S_SM_DPpb_ECDSA_NIST.pem")
    with pytest.raises(pki.PkiLoadError, match="does not match"):
        pki.load(tmp_path)


def test_load_missing_or_empty_directory(tmp_path):
    with pytest.raises(pki.PkiLoadError, match="not a directory"):
        pki.load(tmp_path / "absent")
    with pytest.raises(pki.PkiLoadError, match="no CERT_"):
        pki.load(tmp_path)


def test_generate_validates_arguments(tmp_path):
    with pytest.raises(ValueError):
        pki.generate(curves=("p384",))
    with pytest.raises(ValueError):
        pki.generate(eum_eins=("89AB",))
    with pytest.raises(ValueError, match="outside"):
        pki.generate(eum_eins=("8904",), eid=pki.make_eid("8905", 1))
    one = pki.generate(curves=("brp",), eid=pki.make_eid("89049032", 99))
    assert one.curves == (Curve.BRP,) and one.euicc(Curve.BRP).eid == pki.make_eid("89049032", 99)
    with pytest.raises(KeyError, match="NIST"):
        one.require(Role.CI, Curve.NIST)


# ---------------------------------------------------------------------------------------------
# TLS with the written PEM files


def test_mutual_tls_with_generated_files(pset):
    chain, key = pset.tls_server_files(Role.DP_TLS, Curve.NIST)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain, key)
    server.load_verify_locations(pset.tls_files["client_ca"])
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=str(pset.tls_files["trust_bundle"]))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    client.load_cert_chain(*pset.tls_server_files(Role.OPERATOR_TLS))

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = {}

    def serve():
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls:
            seen["client"] = dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client.wrap_socket(raw, server_hostname="smdp.test") as tls:
                assert tls.recv(2) == b"ok"
    finally:
        thread.join(5)
        listener.close()
    assert seen["client"] == "TEST Operator ES2+ client"
