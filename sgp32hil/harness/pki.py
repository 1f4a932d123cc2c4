"""Test PKI for SGP.22 / SGP.32: generate, load and validate RSP certificate chains.

Certificate profiles follow SGP.22 v2.5 §4.5.2.1 (CI, EUM, eUICC, SM-DP+ auth/pb/TLS) and the file
layout of the GSMA SGP.26 test certificate set (``CertificateIssuer/CERT_CI_ECDSA_NIST.der`` +
``SK_CI_ECDSA_NIST.pem`` ...). Signatures are ECDSA with SHA-256 on NIST P-256 or brainpoolP256r1;
on the wire SGP.22 carries them in the BSI TR-03111 plain ``r || s`` format.

Everything is built with ``cryptography``'s X.509 builder; chains are checked with
``Certificate.verify_directly_issued_by`` plus the SGP.22 §4.5.2.2 rules (policies, EIN range).
"""

from __future__ import annotations

import datetime as _dt
import enum
import ipaddress
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import asn1tools
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

__all__ = [
    "ChainError",
    "ChainReason",
    "Credential",
    "Curve",
    "KeyPair",
    "PkiLoadError",
    "PkiSet",
    "Role",
    "RspOid",
    "VerifiedChain",
    "ci_pkid",
    "der_to_plain",
    "detect_role",
    "eid_is_valid",
    "eid_of",
    "generate",
    "issue",
    "load",
    "make_eid",
    "permitted_eins",
    "plain_to_der",
    "public_key_bytes",
    "sign_plain",
    "verify_chain",
    "verify_plain",
]

MANIFEST_NAME = "pki.yaml"
MANIFEST_FORMAT = "sgp32-hil-pki/1"


class RspOid:
    """GSMA RSP object identifiers (SGP.22 v2.5 §4.5.2.1, RSPDefinitions ``id-rsp``)."""

    ROLE_CI = x509.ObjectIdentifier("2.23.146.1.2.1.0")
    ROLE_EUICC_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.1")
    ROLE_EUM_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.2")
    ROLE_DP_TLS_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.3")
    ROLE_DP_AUTH_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.4")
    ROLE_DP_PB_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.5")
    ROLE_DS_TLS_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.6")
    ROLE_DS_AUTH_V2 = x509.ObjectIdentifier("2.23.146.1.2.1.7")
    # SGP.22 v3 variant A/B/C policies (SGP.26 v3), accepted when validating a lab's own set.
    ROLE_EUICC_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.0.0.0")
    ROLE_EUM_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.0")
    ROLE_DP_TLS_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.1.0")
    ROLE_DP_AUTH_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.1.1")
    ROLE_DP_PB_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.1.2")
    ROLE_DS_TLS_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.2.0")
    ROLE_DS_AUTH_V3 = x509.ObjectIdentifier("2.23.146.1.2.1.0.0.2.1")
    # id-rsp-ext-permittedEins (SGP.22 v3): PermittedEins ::= SEQUENCE OF PrintableString.
    PERMITTED_EINS = x509.ObjectIdentifier("2.23.146.1.2.2.0")
    # Registered IDs of the 2.999 example arc, as used by the SGP.26 test set.
    TEST_CI_RID = x509.ObjectIdentifier("2.999.1")
    TEST_EUM_RID = x509.ObjectIdentifier("2.999.5")
    TEST_SMDP_RID = x509.ObjectIdentifier("2.999.10")


class Role(enum.StrEnum):
    """Certificate roles of the RSP ecosystem plus the harness's own TLS roles."""

    CI = "CI"
    EUM = "EUM"
    EUICC = "EUICC"
    DP_AUTH = "DPauth"
    DP_PB = "DPpb"
    DP_TLS = "DPtls"
    DS_AUTH = "DSauth"
    DS_TLS = "DStls"
    EIM = "EIM"
    EIM_TLS = "EIM_TLS"
    TLS_CA = "TLS_CA"
    OPERATOR_TLS = "OPERATOR_TLS"


ROLE_POLICIES: Mapping[Role, tuple[x509.ObjectIdentifier, ...]] = {
    Role.CI: (RspOid.ROLE_CI,),
    Role.EUICC: (RspOid.ROLE_EUICC_V2, RspOid.ROLE_EUICC_V3),
    Role.EUM: (RspOid.ROLE_EUM_V2, RspOid.ROLE_EUM_V3),
    Role.DP_TLS: (RspOid.ROLE_DP_TLS_V2, RspOid.ROLE_DP_TLS_V3),
    Role.DP_AUTH: (RspOid.ROLE_DP_AUTH_V2, RspOid.ROLE_DP_AUTH_V3),
    Role.DP_PB: (RspOid.ROLE_DP_PB_V2, RspOid.ROLE_DP_PB_V3),
    Role.DS_TLS: (RspOid.ROLE_DS_TLS_V2, RspOid.ROLE_DS_TLS_V3),
    Role.DS_AUTH: (RspOid.ROLE_DS_AUTH_V2, RspOid.ROLE_DS_AUTH_V3),
}

_TLS_SERVER_ROLES = frozenset({Role.DP_TLS, Role.DS_TLS, Role.EIM_TLS})
_CA_ROLES = frozenset({Role.CI, Role.EUM, Role.TLS_CA})

# Folder and file stem per role, as in the SGP.26 certificate set.
_ROLE_DIR: Mapping[Role, str] = {
    Role.CI: "CertificateIssuer",
    Role.EUM: "EUM",
    Role.EUICC: "eUICC",
    Role.DP_AUTH: "DPauth",
    Role.DP_PB: "DPpb",
    Role.DP_TLS: "DPtls",
    Role.DS_AUTH: "DSauth",
    Role.DS_TLS: "DStls",
    Role.EIM: "eIM",
    Role.EIM_TLS: "eIM",
    Role.TLS_CA: "TLS",
    Role.OPERATOR_TLS: "TLS",
}
_ROLE_STEM: Mapping[Role, str] = {
    Role.CI: "CI_ECDSA",
    Role.EUM: "EUM_ECDSA",
    Role.EUICC: "EUICC_ECDSA",
    Role.DP_AUTH: "S_SM_DPauth_ECDSA",
    Role.DP_PB: "S_SM_DPpb_ECDSA",
    Role.DP_TLS: "S_SM_DP_TLS",
    Role.DS_AUTH: "S_SM_DSauth_ECDSA",
    Role.DS_TLS: "S_SM_DS_TLS",
    Role.EIM: "EIM_ECDSA",
    Role.EIM_TLS: "EIM_TLS",
    Role.TLS_CA: "TLS_CA_ECDSA",
    Role.OPERATOR_TLS: "OPERATOR_TLS",
}
_STEM_ROLE = {stem.lower(): role for role, stem in _ROLE_STEM.items()}
_CERT_FILE = re.compile(r"^CERT_(?P<stem>.+?)_(?P<curve>NIST|BRP)\.(?P<ext>der|pem)$", re.IGNORECASE)


class Curve(enum.StrEnum):
    """The two curves SGP.22 requires for RSP signatures: NIST P-256 and brainpoolP256r1."""

    NIST = "NIST"
    BRP = "BRP"

    @property
    def ec_curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1() if self is Curve.NIST else ec.BrainpoolP256R1()

    @classmethod
    def parse(cls, value: "Curve | str") -> "Curve":
        if isinstance(value, Curve):
            return value
        key = str(value).strip().lower()
        if key in ("nist", "p256", "p-256", "secp256r1", "prime256v1"):
            return cls.NIST
        if key in ("brp", "brainpool", "brainpoolp256r1", "bp256", "bp256r1"):
            return cls.BRP
        raise ValueError(f"unknown curve {value!r}: expected 'nist' or 'brp'")

    @classmethod
    def of(cls, key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> "Curve":
        name = key.curve.name
        if name == "secp256r1":
            return cls.NIST
        if name == "brainpoolP256r1":
            return cls.BRP
        raise ValueError(f"unsupported curve {name}: SGP.22 allows secp256r1 and brainpoolP256r1")


class ChainReason(enum.StrEnum):
    """Why a certificate chain was rejected; servers map these to SGP.22 reason codes."""

    UNKNOWN_CI = "unknown-ci"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_ROLE = "wrong-role"
    NOT_A_CA = "not-a-ca"
    EID_OUT_OF_RANGE = "eid-out-of-range"
    EID_MISMATCH = "eid-mismatch"
    INVALID_EID = "invalid-eid"
    UNSUPPORTED_CURVE = "unsupported-curve"
    MALFORMED = "malformed"


class ChainError(ValueError):
    """A certificate chain failed validation (SGP.22 §4.5.2.2); ``reason`` says why."""

    def __init__(self, reason: ChainReason, message: str, certificate: x509.Certificate | None = None):
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.certificate = certificate


class PkiLoadError(ValueError):
    """A PKI directory or one of its files could not be read."""


# ---------------------------------------------------------------------------------------------
# EID (GSMA SGP.29: 32 digits, digits 31-32 are ISO/IEC 7064 MOD 97-10 check digits)


def make_eid(eum_prefix: str, serial: int) -> str:
    """EID = EIN prefix, zero-padded ``serial`` to 30 digits, then ISO 7064 MOD 97-10 check digits."""
    if not eum_prefix.isdigit() or not 1 <= len(eum_prefix) <= 29:
        raise ValueError(f"EIN prefix must be 1..29 decimal digits, got {eum_prefix!r}")
    width = 30 - len(eum_prefix)
    if serial < 0 or len(str(serial)) > width:
        raise ValueError(f"serial {serial} does not fit in {width} digits after prefix {eum_prefix}")
    body = f"{eum_prefix}{serial:0{width}d}"
    return f"{body}{98 - int(body + '00') % 97:02d}"


def eid_is_valid(eid: str) -> bool:
    """True for 32 decimal digits whose value mod 97 is 1 (SGP.29, ISO 7064 MOD 97-10)."""
    return isinstance(eid, str) and len(eid) == 32 and eid.isascii() and eid.isdigit() and int(eid) % 97 == 1


def eid_of(cert: x509.Certificate) -> str | None:
    """The EID from an eUICC certificate's subject serialNumber (SGP.22 §4.5.2.1), or None."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(attrs[0].value) if attrs else None


# ---------------------------------------------------------------------------------------------
# Keys and signatures (BSI TR-03111 plain format)


def _field_size(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> int:
    return (key.curve.key_size + 7) // 8


def der_to_plain(signature: bytes, size: int = 32) -> bytes:
    """DER ECDSA-Sig-Value -> TR-03111 ``r || s`` with each integer left-padded to ``size`` bytes."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def plain_to_der(signature: bytes) -> bytes:
    """TR-03111 ``r || s`` (even length) -> DER ECDSA-Sig-Value."""
    if not signature or len(signature) % 2:
        raise ValueError(f"plain ECDSA signature must have a non-zero even length, got {len(signature)}")
    half = len(signature) // 2
    return encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))


def sign_plain(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-SHA256 over ``data``, returned as TR-03111 ``r || s`` (64 bytes on 256-bit curves)."""
    return der_to_plain(private_key.sign(data, ec.ECDSA(hashes.SHA256())), _field_size(private_key))


def _as_public_key(obj) -> ec.EllipticCurvePublicKey:
    if isinstance(obj, Credential):
        obj = obj.certificate
    if isinstance(obj, KeyPair):
        return obj.public_key
    if isinstance(obj, x509.Certificate):
        obj = obj.public_key()
    if isinstance(obj, ec.EllipticCurvePrivateKey):
        obj = obj.public_key()
    if not isinstance(obj, ec.EllipticCurvePublicKey):
        raise TypeError(f"expected an EC public key, certificate or credential, got {type(obj).__name__}")
    return obj


def verify_plain(key, data: bytes, signature: bytes) -> bool:
    """Check a TR-03111 ``r || s`` ECDSA-SHA256 signature with a key, certificate or Credential."""
    public_key = _as_public_key(key)
    if len(signature) != 2 * _field_size(public_key):
        return False
    try:
        public_key.verify(plain_to_der(signature), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_bytes(obj) -> bytes:
    """Uncompressed point ``04 || X || Y`` of a certificate's (or key's) EC public key (X9.62)."""
    return _as_public_key(obj).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def ci_pkid(cert: x509.Certificate) -> bytes:
    """CI public key identifier: the SubjectKeyIdentifier of CERT.CI.ECDSA (SGP.22 §4.5.2.1),
    as listed in euiccCiPKIdListForVerification/Signing. Falls back to RFC 5280 §4.2.1.2 method 1."""
    return _ski(cert) or x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


@dataclass(frozen=True)
class KeyPair:
    """A bare EC key pair, e.g. the one-time keys otSK/otPK used for ECKA in SGP.22 profile binding."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, curve: Curve | str = Curve.NIST) -> "KeyPair":
        return cls(ec.generate_private_key(Curve.parse(curve).ec_curve))

    @property
    def curve(self) -> Curve:
        return Curve.of(self.private_key)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def public_bytes(self) -> bytes:
        return public_key_bytes(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return sign_plain(self.private_key, data)

    def exchange(self, peer_point: bytes) -> bytes:
        """ECDH shared secret (x-coordinate, TR-03111 ECKA-DH) with a peer's uncompressed point."""
        peer = ec.EllipticCurvePublicKey.from_encoded_point(self.private_key.curve, peer_point)
        return self.private_key.exchange(ec.ECDH(), peer)


# ---------------------------------------------------------------------------------------------
# Credentials and sets


@dataclass(frozen=True, eq=False)
class Credential:
    """A certificate with its private key (None when the key is not available, e.g. on a real
    card) and the issuing certificates, nearest first, up to and including the CI."""

    role: Role | None
    curve: Curve
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | None = None
    chain: tuple[x509.Certificate, ...] = ()
    cert_path: Path | None = None
    key_path: Path | None = None

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.certificate.public_key()

    @property
    def public_key_bytes(self) -> bytes:
        return public_key_bytes(self.certificate)

    @property
    def ski(self) -> bytes | None:
        return _ski(self.certificate)

    @property
    def aki(self) -> bytes | None:
        return _aki(self.certificate)

    @property
    def eid(self) -> str | None:
        return eid_of(self.certificate) if self.role is Role.EUICC else None

    def sign(self, data: bytes) -> bytes:
        """TR-03111 ``r || s`` ECDSA-SHA256 signature with this credential's private key."""
        if self.private_key is None:
            raise ValueError(f"no private key for {self.role} {self.curve.value} ({self.cert_path or 'in memory'})")
        return sign_plain(self.private_key, data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        return verify_plain(self.certificate, data, signature)

    def chain_pem(self, include_root: bool = True) -> bytes:
        """PEM of the certificate followed by its issuers (the TLS ``certfile`` layout)."""
        chain = self.chain if include_root else tuple(c for c in self.chain if c.issuer != c.subject)
        certs = [self.certificate, *chain]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def key_pem(self) -> bytes:
        if self.private_key is None:
            raise ValueError(f"no private key for {self.role} {self.curve.value}")
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class VerifiedChain:
    """Result of :func:`verify_chain`: the path leaf -> ... -> trusted CI."""

    leaf: x509.Certificate
    path: tuple[x509.Certificate, ...]
    ci: x509.Certificate
    ci_pkid: bytes
    role: Role | None
    curve: Curve
    eid: str | None = None


@dataclass
class PkiSet:
    """A complete or partial RSP PKI: credentials by (role, curve), plus lab metadata."""

    root: Path | None = None
    credentials: dict[tuple[Role, Curve], Credential] = field(default_factory=dict)
    extra: dict[str, Credential] = field(default_factory=dict)
    eum_eins: tuple[str, ...] = ()
    smdp_address: str | None = None
    eim_address: str | None = None
    tls_files: dict[str, Path] = field(default_factory=dict)

    def get(self, role: Role | str, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.credentials.get((Role(role), Curve.parse(curve)))

    def require(self, role: Role | str, curve: Curve | str = Curve.NIST) -> Credential:
        cred = self.get(role, curve)
        if cred is None:
            where = f" in {self.root}" if self.root else ""
            raise KeyError(f"no {Role(role).value} credential for curve {Curve.parse(curve).value}{where}")
        return cred

    def ci(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.CI, curve)

    def eum(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.EUM, curve)

    def euicc(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.EUICC, curve)

    def dp_auth(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.DP_AUTH, curve)

    def dp_pb(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.DP_PB, curve)

    def dp_tls(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.DP_TLS, curve)

    def eim(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.EIM, curve)

    def eim_tls(self, curve: Curve | str = Curve.NIST) -> Credential | None:
        return self.get(Role.EIM_TLS, curve)

    def tls_ca(self) -> Credential | None:
        return self.get(Role.TLS_CA, Curve.NIST)

    def operator_tls(self) -> Credential | None:
        return self.get(Role.OPERATOR_TLS, Curve.NIST)

    @property
    def curves(self) -> tuple[Curve, ...]:
        return tuple(c for c in Curve if (Role.CI, c) in self.credentials)

    def trusted_cis(self, curve: Curve | str | None = None) -> list[x509.Certificate]:
        curves = list(Curve) if curve is None else [Curve.parse(curve)]
        return [self.credentials[(Role.CI, c)].certificate for c in curves if (Role.CI, c) in self.credentials]

    @property
    def ci_pkids(self) -> list[bytes]:
        """PKIds of the CIs, in curve order, for euiccCiPKIdListForVerification/Signing."""
        return [ci_pkid(c) for c in self.trusted_cis()]

    def ci_by_pkid(self, pkid: bytes) -> Credential | None:
        for curve in Curve:
            cred = self.ci(curve)
            if cred is not None and ci_pkid(cred.certificate) == pkid:
                return cred
        return None

    def tls_server_files(self, role: Role | str, curve: Curve | str = Curve.NIST) -> tuple[Path, Path]:
        """(chain PEM, key PEM) paths for an ``ssl``/uvicorn server with a DPtls or EIM_TLS certificate."""
        role, curve = Role(role), Curve.parse(curve)
        prefix = {Role.DP_TLS: "smdp", Role.EIM_TLS: "eim", Role.OPERATOR_TLS: "operator"}.get(role)
        if prefix is None:
            raise ValueError(f"{role.value} is not a TLS role")
        try:
            return self.tls_files[f"{prefix}_chain_{curve.value}"], self.tls_files[f"{prefix}_key_{curve.value}"]
        except KeyError:
            raise KeyError(f"no TLS PEM files for {role.value} {curve.value}; generate() writes them") from None

    def issue_euicc(
        self, eid: str, curve: Curve | str = Curve.NIST, *, days: int | None = None
    ) -> Credential:
        """A further eUICC credential with ``eid`` (e.g. one per virtual card), issued by the EUM."""
        eum = self.require(Role.EUM, curve)
        if eum.private_key is None:
            raise ValueError(f"the EUM {Curve.parse(curve).value} private key is not available; cannot issue eUICCs")
        return _issue_euicc(eum, eid, days=days)

    def verify(self, leaf, intermediates: Iterable = (), **kwargs) -> VerifiedChain:
        """:func:`verify_chain` against this set's CIs."""
        return verify_chain(leaf, intermediates, self.trusted_cis(), **kwargs)


# ---------------------------------------------------------------------------------------------
# Issuing


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_usage(*, digital_signature=False, key_cert_sign=False, crl_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _policies(oid: x509.ObjectIdentifier) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(oid, None)])


def _crl_dps(urls: Sequence[str]) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in urls]
    )


def issue(
    role: Role | str,
    curve: Curve | str,
    subject: x509.Name,
    issuer: Credential | None = None,
    *,
    private_key: ec.EllipticCurvePrivateKey | None = None,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
    days: int = 3650,
    san: Sequence[x509.GeneralName] = (),
    eins: Sequence[str] = (),
    crl_urls: Sequence[str] = (),
    signing_key: ec.EllipticCurvePrivateKey | None = None,
) -> Credential:
    """Issue one certificate with the SGP.22 v2.5 §4.5.2.1 profile of ``role``.

    ``issuer`` None means self-signed (CI, TLS_CA). ``eins`` are the EUM's permitted EIN prefixes,
    encoded as nameConstraints permittedSubtrees directoryName {O, serialNumber=EIN}.
    ``signing_key`` overrides the issuer's key (to build deliberately broken certificates).
    """
    role, curve = Role(role), Curve.parse(curve)
    key = private_key or ec.generate_private_key(curve.ec_curve)
    if Curve.of(key) is not curve:
        raise ValueError(f"private key is on {Curve.of(key).value}, expected {curve.value}")
    if issuer is not None and issuer.private_key is None and signing_key is None:
        raise ValueError(f"issuer {issuer.role} has no private key")
    start = not_before or (_now() - _dt.timedelta(hours=1))
    end = not_after or (start + _dt.timedelta(days=days))
    issuer_name = issuer.certificate.subject if issuer else subject
    issuer_ski = (issuer.ski if issuer else None) or None
    public = key.public_key()

    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is not None:
        aki = (
            x509.AuthorityKeyIdentifier(issuer_ski, None, None)
            if issuer_ski
            else x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.certificate.public_key())
        )
        b = b.add_extension(aki, critical=False)

    if role is Role.CI:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        b = b.add_extension(_policies(RspOid.ROLE_CI), critical=True)
        b = b.add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
    elif role is Role.EUM:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        b = b.add_extension(_policies(RspOid.ROLE_EUM_V2), critical=True)
        b = b.add_extension(_key_usage(key_cert_sign=True), critical=True)
        if eins:
            org = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
            subtrees = [
                x509.DirectoryName(
                    _name(*([(NameOID.ORGANIZATION_NAME, org[0])] if org else []), (NameOID.SERIAL_NUMBER, ein))
                )
                for ein in eins
            ]
            b = b.add_extension(x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None), critical=True)
    elif role is Role.TLS_CA:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        b = b.add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
    else:
        b = b.add_extension(_key_usage(digital_signature=True), critical=True)
        if role in ROLE_POLICIES:
            b = b.add_extension(_policies(ROLE_POLICIES[role][0]), critical=role not in _TLS_SERVER_ROLES)
        if role in _TLS_SERVER_ROLES:
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=True,
            )
        elif role is Role.OPERATOR_TLS:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    if crl_urls:
        b = b.add_extension(_crl_dps(crl_urls), critical=False)

    signer = signing_key or (issuer.private_key if issuer else key)
    cert = b.sign(signer, hashes.SHA256())
    chain = (issuer.certificate, *issuer.chain) if issuer else ()
    return Credential(role=role, curve=curve, certificate=cert, private_key=key, chain=chain)


def _issue_euicc(eum: Credential, eid: str, *, days: int | None = None) -> Credential:
    if not eid_is_valid(eid):
        raise ValueError(f"EID {eid!r} is not 32 digits with valid ISO 7064 MOD 97-10 check digits")
    eins = permitted_eins(eum.certificate)
    if eins and not any(eid.startswith(e) for e in eins):
        raise ValueError(f"EID {eid} is outside the EUM's permitted EINs {eins}")
    org = [a.value for a in eum.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    subject = _name(
        *([(NameOID.ORGANIZATION_NAME, org[0])] if org else []),
        (NameOID.SERIAL_NUMBER, eid),
        (NameOID.COMMON_NAME, "Test eUICC"),
    )
    # RFC 5280 §4.1.2.5: 99991231235959Z for a certificate without a well-defined expiration.
    not_after = None if days else _dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_dt.UTC)
    return issue(Role.EUICC, eum.curve, subject, eum, not_after=not_after, days=days or 3650)


def generate(
    out_dir: str | os.PathLike | None = None,
    *,
    curves: Sequence[Curve | str] = ("nist", "brp"),
    smdp_host: str | Sequence[str] = ("localhost", "127.0.0.1"),
    eim_host: str | Sequence[str] = ("localhost", "127.0.0.1"),
    eum_eins: Sequence[str] = ("89049032",),
    eid: str | None = None,
    days: int = 3650,
    smdp_oid: str = "2.999.10",
    crl_url: str = "http://ci.sgp32-hil.test/crl/ci.crl",
) -> PkiSet:
    """Generate a complete test PKI (SGP.22 v2.5 §4.5.2.1 profiles, SGP.26 layout).

    Per curve: CI (self-signed), EUM (permitted EINs), eUICC (EID in serialNumber), DPauth, DPpb,
    DPtls, eIM signing and eIM TLS (both issued by the CI, as in SGP.26). Once: a plain TLS CA and an
    operator client certificate for ES2+ mutual TLS. With ``out_dir`` the set is written there with a
    ``pki.yaml`` manifest and PEM files for TLS servers under ``tls/``.

    SGP.32 assigns no GSMA role policy to eIM certificates, so they carry none. The BRP TLS files
    need an OpenSSL offering brainpool TLS groups (3.0's defaults do not); NIST TLS works everywhere.
    """
    curve_list = list(dict.fromkeys(Curve.parse(c) for c in curves))
    if not curve_list:
        raise ValueError("at least one curve is needed")
    smdp_hosts = [smdp_host] if isinstance(smdp_host, str) else list(smdp_host)
    eim_hosts = [eim_host] if isinstance(eim_host, str) else list(eim_host)
    if not smdp_hosts or not eim_hosts:
        raise ValueError("smdp_host and eim_host need at least one name")
    eins = tuple(eum_eins)
    if not eins or any(not e.isdigit() or not 1 <= len(e) <= 29 for e in eins):
        raise ValueError(f"eum_eins must be EIN prefixes of 1..29 digits, got {list(eins)}")
    euicc_eid = eid or make_eid(eins[0], 1)
    dp_rid = x509.RegisteredID(x509.ObjectIdentifier(smdp_oid))
    crl = (crl_url,) if crl_url else ()

    pki = PkiSet(eum_eins=eins, smdp_address=smdp_hosts[0], eim_address=eim_hosts[0])
    org = "SGP32HIL TEST"
    for curve in curve_list:
        ci = issue(
            Role.CI, curve,
            _name((NameOID.COUNTRY_NAME, "XX"), (NameOID.ORGANIZATION_NAME, org),
                  (NameOID.ORGANIZATIONAL_UNIT_NAME, "TESTCERT"), (NameOID.COMMON_NAME, f"Test CI {curve.value}")),
            days=days, san=[x509.RegisteredID(RspOid.TEST_CI_RID)], crl_urls=crl,
        )
        eum = issue(
            Role.EUM, curve,
            _name((NameOID.COUNTRY_NAME, "XX"), (NameOID.ORGANIZATION_NAME, "SGP32HIL Test EUM"),
                  (NameOID.COMMON_NAME, f"Test EUM {curve.value}")),
            ci, days=days, san=[x509.RegisteredID(RspOid.TEST_EUM_RID)], eins=eins, crl_urls=crl,
        )
        dp_subject = _name((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, "TEST SM-DP+"))
        eim_subject = _name((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, "TEST eIM"))
        creds = [
            ci,
            eum,
            _issue_euicc(eum, euicc_eid),
            issue(Role.DP_AUTH, curve, dp_subject, ci, days=days, san=[dp_rid], crl_urls=crl),
            issue(Role.DP_PB, curve, dp_subject, ci, days=days, san=[dp_rid], crl_urls=crl),
            issue(
                Role.DP_TLS, curve,
                _name((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, smdp_hosts[0])),
                ci, days=days, san=[*_host_names(smdp_hosts), dp_rid], crl_urls=crl,
            ),
            issue(Role.EIM, curve, eim_subject, ci, days=days),
            issue(
                Role.EIM_TLS, curve,
                _name((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, eim_hosts[0])),
                ci, days=days, san=_host_names(eim_hosts),
            ),
        ]
        for cred in creds:
            pki.credentials[(cred.role, curve)] = cred

    tls_ca = issue(
        Role.TLS_CA, Curve.NIST, _name((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, "Test TLS CA")),
        days=days,
    )
    operator = issue(
        Role.OPERATOR_TLS, Curve.NIST,
        _name((NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, "TEST Operator ES2+ client")),
        tls_ca, days=days, san=[x509.DNSName("operator.sgp32-hil.test")],
    )
    pki.credentials[(Role.TLS_CA, Curve.NIST)] = tls_ca
    pki.credentials[(Role.OPERATOR_TLS, Curve.NIST)] = operator

    if out_dir is not None:
        _write(pki, Path(out_dir))
    return pki


# ---------------------------------------------------------------------------------------------
# Files


def _rel_cert_path(role: Role, curve: Curve) -> Path:
    return Path(_ROLE_DIR[role]) / f"CERT_{_ROLE_STEM[role]}_{curve.value}.der"


def _rel_key_path(role: Role, curve: Curve) -> Path:
    return Path(_ROLE_DIR[role]) / f"SK_{_ROLE_STEM[role]}_{curve.value}.pem"


def _write_file(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write(pki: PkiSet, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for (role, curve), cred in sorted(pki.credentials.items(), key=lambda kv: (list(Role).index(kv[0][0]), list(Curve).index(kv[0][1]))):
        cert_rel, key_rel = _rel_cert_path(role, curve), _rel_key_path(role, curve)
        _write_file(root / cert_rel, cred.der)
        _write_file(root / key_rel, cred.key_pem(), secret=True)
        pki.credentials[(role, curve)] = replace(cred, cert_path=root / cert_rel, key_path=root / key_rel)
        entry = {
            "role": role.value,
            "curve": curve.value,
            "certificate": cert_rel.as_posix(),
            "private_key": key_rel.as_posix(),
            "subject": cred.certificate.subject.rfc4514_string(),
            "ski": (cred.ski or b"").hex(),
            "not_after": cred.certificate.not_valid_after_utc.isoformat(),
        }
        if role is Role.EUICC:
            entry["eid"] = cred.eid
        entries.append(entry)
        if role is Role.CI:
            _write_file(root / cert_rel.with_suffix(".pem"), _pem([cred.certificate]))

    tls: dict[str, Path] = {}
    tls_dir = Path("tls")
    trust = [pki.credentials[(Role.CI, c)].certificate for c in Curve if (Role.CI, c) in pki.credentials]
    if (Role.TLS_CA, Curve.NIST) in pki.credentials:
        ca = pki.credentials[(Role.TLS_CA, Curve.NIST)].certificate
        trust.append(ca)
        tls["client_ca"] = tls_dir / "client-ca.pem"
        _write_file(root / tls["client_ca"], _pem([ca]))
    tls["trust_bundle"] = tls_dir / "ca-bundle.pem"
    _write_file(root / tls["trust_bundle"], _pem(trust))
    for role, prefix in ((Role.DP_TLS, "smdp"), (Role.EIM_TLS, "eim"), (Role.OPERATOR_TLS, "operator")):
        for curve in Curve:
            cred = pki.credentials.get((role, curve))
            if cred is None:
                continue
            tls[f"{prefix}_chain_{curve.value}"] = tls_dir / f"{prefix}-{curve.value.lower()}.chain.pem"
            tls[f"{prefix}_key_{curve.value}"] = tls_dir / f"{prefix}-{curve.value.lower()}.key.pem"
            _write_file(root / tls[f"{prefix}_chain_{curve.value}"], cred.chain_pem())
            _write_file(root / tls[f"{prefix}_key_{curve.value}"], cred.key_pem(), secret=True)
    pki.tls_files = {k: root / v for k, v in tls.items()}
    pki.root = root

    manifest = {
        "format": MANIFEST_FORMAT,
        "created": _now().isoformat(),
        "profile": "SGP.22 v2.5 section 4.5.2.1; SGP.26 file layout",
        "smdp_address": pki.smdp_address,
        "eim_address": pki.eim_address,
        "eum_eins": list(pki.eum_eins),
        "ci_pkids": {c.value: ci_pkid(pki.credentials[(Role.CI, c)].certificate).hex() for c in pki.curves},
        "credentials": entries,
        "tls": {k: v.as_posix() for k, v in tls.items()},
    }
    _write_file(root / MANIFEST_NAME, yaml.safe_dump(manifest, sort_keys=False).encode())


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiLoadError(f"{path}: cannot read certificate: {exc.strerror or exc}") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiLoadError(f"{path}: not a DER or PEM X.509 certificate ({exc})") from exc


def _read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiLoadError(f"{path}: cannot read private key: {exc.strerror or exc}") from exc
    try:
        key = (
            serialization.load_pem_private_key(data, password=None)
            if data.lstrip().startswith(b"-----BEGIN")
            else serialization.load_der_private_key(data, password=None)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PkiLoadError(f"{path}: not an unencrypted PEM/DER private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiLoadError(f"{path}: expected an EC private key, found {type(key).__name__}")
    return key


def _load_pair(cert_path: Path, role: Role | None, curve_hint: str | None) -> Credential:
    cert = _read_certificate(cert_path)
    try:
        curve = Curve.of(cert.public_key())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PkiLoadError(f"{cert_path}: {exc}") from exc
    if curve_hint and Curve.parse(curve_hint) is not curve:
        raise PkiLoadError(f"{cert_path}: file name says {curve_hint.upper()} but the key is on {curve.value}")
    key_path = cert_path.with_name("SK_" + cert_path.name[len("CERT_"):]).with_suffix(".pem")
    key = None
    if key_path.is_file():
        key = _read_private_key(key_path)
        if public_key_bytes(key) != public_key_bytes(cert):
            raise PkiLoadError(f"{key_path}: private key does not match certificate {cert_path.name}")
    else:
        key_path = None
    return Credential(
        role=role if role is not None else detect_role(cert),
        curve=curve,
        certificate=cert,
        private_key=key,
        cert_path=cert_path,
        key_path=key_path,
    )


def _attach_chains(creds: list[Credential]) -> list[Credential]:
    by_ski: dict[bytes, x509.Certificate] = {}
    for c in creds:
        if c.ski:
            by_ski.setdefault(c.ski, c.certificate)
    out = []
    for c in creds:
        chain: list[x509.Certificate] = []
        cur = c.certificate
        while cur.issuer != cur.subject and len(chain) < 8:
            aki = _aki(cur)
            nxt = by_ski.get(aki) if aki else None
            if nxt is None or nxt is cur:
                break
            chain.append(nxt)
            cur = nxt
        out.append(replace(c, chain=tuple(chain)))
    return out


def load(directory: str | os.PathLike) -> PkiSet:
    """Load a PKI laid out like the SGP.26 test certificates (``CERT_*.der`` + ``SK_*.pem``, in any
    sub-folders such as CertificateIssuer/, EUM/, eUICC/, DPauth/, DPpb/, DPtls/).

    Absent parts are simply missing (``PkiSet.get`` returns None); a file that cannot be parsed
    raises :class:`PkiLoadError` naming it. Certificates with unknown names, or duplicates found
    deeper in the tree (e.g. expired TLS sets), go to ``PkiSet.extra`` keyed by relative path.
    A ``pki.yaml`` written by :func:`generate` supplies addresses, EINs and TLS file paths.
    """
    root = Path(directory)
    if not root.is_dir():
        raise PkiLoadError(f"{root}: not a directory")
    files = sorted(
        (p for p in root.rglob("CERT_*") if p.is_file() and p.suffix.lower() in (".der", ".pem", ".crt", ".cer")),
        key=lambda p: (len(p.relative_to(root).parts), p.as_posix()),
    )
    if not files:
        raise PkiLoadError(f"{root}: no CERT_*.der certificate files found")
    der_stems = {p.with_suffix("") for p in files if p.suffix.lower() != ".pem"}

    primary: dict[tuple[Role, Curve], Credential] = {}
    extra: dict[str, Credential] = {}
    for path in files:
        if path.suffix.lower() == ".pem" and path.with_suffix("") in der_stems:
            continue
        m = _CERT_FILE.match(path.name)
        role = _STEM_ROLE.get(m["stem"].lower()) if m else None
        cred = _load_pair(path, role, m["curve"] if m else None)
        key = (role, cred.curve)
        if role is not None and key not in primary:
            primary[key] = cred
        else:
            extra[path.relative_to(root).as_posix()] = cred

    linked = _attach_chains([*primary.values(), *extra.values()])
    primary = {(c.role, c.curve): c for c in linked[: len(primary)]}
    extra = dict(zip(extra.keys(), linked[len(primary):], strict=True))
    pki = PkiSet(root=root, credentials=primary, extra=extra)

    manifest_path = root / MANIFEST_NAME
    manifest: dict = {}
    if manifest_path.is_file():
        try:
            manifest = yaml.safe_load(manifest_path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise PkiLoadError(f"{manifest_path}: not valid YAML ({exc})") from exc
        if not isinstance(manifest, dict):
            raise PkiLoadError(f"{manifest_path}: expected a mapping at the top level")
    pki.smdp_address = manifest.get("smdp_address") or _first_host(pki.dp_tls(Curve.NIST) or pki.dp_tls(Curve.BRP))
    pki.eim_address = manifest.get("eim_address") or _first_host(pki.eim_tls(Curve.NIST) or pki.eim_tls(Curve.BRP))
    eins = manifest.get("eum_eins")
    if not eins:
        eins = []
        for curve in Curve:
            eum = pki.eum(curve)
            if eum is not None:
                eins.extend(e for e in permitted_eins(eum.certificate) if e not in eins)
    pki.eum_eins = tuple(str(e) for e in eins)
    for name, rel in (manifest.get("tls") or {}).items():
        path = root / rel
        if path.is_file():
            pki.tls_files[name] = path
    return pki


def _first_host(cred: Credential | None) -> str | None:
    if cred is None:
        return None
    try:
        san = cred.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in san:
        if isinstance(name, (x509.DNSName, x509.IPAddress)):
            return str(name.value)
    return None


# ---------------------------------------------------------------------------------------------
# Validation (SGP.22 v2.5 §4.5.2.2)

_HANDLED_CRITICAL = frozenset(
    {
        ExtensionOID.KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        RspOid.PERMITTED_EINS,
    }
)


def _policy_oids(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return set()
    return {p.policy_identifier for p in ext}


def detect_role(cert: x509.Certificate) -> Role | None:
    """The RSP role named by the certificate policies (SGP.22 §4.5.2.1), or None."""
    oids = _policy_oids(cert)
    for role, role_oids in ROLE_POLICIES.items():
        if oids & set(role_oids):
            return role
    return None


_permitted_eins_codec = None


def _decode_permitted_eins(value: bytes) -> list[str]:
    global _permitted_eins_codec
    if _permitted_eins_codec is None:
        _permitted_eins_codec = asn1tools.compile_string(
            "RSPExt DEFINITIONS ::= BEGIN PermittedEins ::= SEQUENCE OF PrintableString END", "der"
        )
    return list(_permitted_eins_codec.decode("PermittedEins", value))


def _ein_subtrees(cert: x509.Certificate) -> list[tuple[str, x509.Name | None]]:
    out: list[tuple[str, x509.Name | None]] = []
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        for sub in nc.permitted_subtrees or ():
            if isinstance(sub, x509.DirectoryName):
                for attr in sub.value.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
                    out.append((str(attr.value), sub.value))
    except x509.ExtensionNotFound:
        pass
    try:
        ext = cert.extensions.get_extension_for_oid(RspOid.PERMITTED_EINS).value
        out.extend((e, None) for e in _decode_permitted_eins(ext.value))
    except x509.ExtensionNotFound:
        pass
    return out


def permitted_eins(cert: x509.Certificate) -> list[str]:
    """EIN prefixes an EUM certificate may issue eUICC certificates for: the serialNumber of each
    nameConstraints permittedSubtrees directoryName (SGP.22 v2 §4.5.2.1), or the v3 permittedEins."""
    return list(dict.fromkeys(e for e, _ in _ein_subtrees(cert)))


def _parse(obj, what: str) -> x509.Certificate:
    if isinstance(obj, Credential):
        return obj.certificate
    if isinstance(obj, x509.Certificate):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        try:
            return x509.load_der_x509_certificate(bytes(obj))
        except ValueError as exc:
            raise ChainError(ChainReason.MALFORMED, f"{what} is not a DER X.509 certificate: {exc}") from exc
    raise TypeError(f"{what}: expected a certificate, Credential or DER bytes, got {type(obj).__name__}")


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def _check_structure(cert: x509.Certificate) -> None:
    try:
        exts = list(cert.extensions)
    except ValueError as exc:
        raise ChainError(ChainReason.MALFORMED, f"{_describe(cert)}: bad extension: {exc}", cert) from exc
    for ext in exts:
        if ext.critical and ext.oid not in _HANDLED_CRITICAL:
            raise ChainError(
                ChainReason.MALFORMED, f"{_describe(cert)}: unsupported critical extension {ext.oid.dotted_string}", cert
            )
    if cert.version is not x509.Version.v3:
        raise ChainError(ChainReason.MALFORMED, f"{_describe(cert)}: not an X.509 v3 certificate", cert)


def _check_dates(cert: x509.Certificate, at: _dt.datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise ChainError(
            ChainReason.NOT_YET_VALID, f"{_describe(cert)} is valid from {cert.not_valid_before_utc.isoformat()}", cert
        )
    if at > cert.not_valid_after_utc:
        raise ChainError(ChainReason.EXPIRED, f"{_describe(cert)} expired {cert.not_valid_after_utc.isoformat()}", cert)


def _curve_of(cert: x509.Certificate) -> Curve:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ChainError(ChainReason.MALFORMED, f"{_describe(cert)}: unreadable public key: {exc}", cert) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ChainError(ChainReason.UNSUPPORTED_CURVE, f"{_describe(cert)}: not an EC key", cert)
    try:
        return Curve.of(key)
    except ValueError as exc:
        raise ChainError(ChainReason.UNSUPPORTED_CURVE, f"{_describe(cert)}: {exc}", cert) from exc


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    if not bc.ca:
        return False, None
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            return False, None
    except x509.ExtensionNotFound:
        pass
    return True, bc.path_length


def _check_leaf_role(cert: x509.Certificate, role: Role) -> None:
    if role in ROLE_POLICIES and not (_policy_oids(cert) & set(ROLE_POLICIES[role])):
        raise ChainError(
            ChainReason.WRONG_ROLE,
            f"{_describe(cert)} lacks the {role.value} certificate policy "
            f"({', '.join(o.dotted_string for o in ROLE_POLICIES[role])})",
            cert,
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if role in _CA_ROLES:
        if not _is_ca(cert)[0]:
            raise ChainError(ChainReason.WRONG_ROLE, f"{_describe(cert)} is not a CA certificate", cert)
        return
    if ku is None or not ku.digital_signature:
        raise ChainError(ChainReason.WRONG_ROLE, f"{_describe(cert)}: keyUsage lacks digitalSignature", cert)
    if _is_ca(cert)[0]:
        raise ChainError(ChainReason.WRONG_ROLE, f"{_describe(cert)} is a CA, expected an end-entity {role.value}", cert)
    wanted = {
        Role.DP_TLS: ExtendedKeyUsageOID.SERVER_AUTH,
        Role.DS_TLS: ExtendedKeyUsageOID.SERVER_AUTH,
        Role.EIM_TLS: ExtendedKeyUsageOID.SERVER_AUTH,
        Role.OPERATOR_TLS: ExtendedKeyUsageOID.CLIENT_AUTH,
    }.get(role)
    if wanted is not None:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is not None and wanted not in eku:
            raise ChainError(ChainReason.WRONG_ROLE, f"{_describe(cert)}: extendedKeyUsage lacks {wanted.dotted_string}", cert)


def _check_eid(leaf: x509.Certificate, eum: x509.Certificate, expected: str | None) -> str:
    cert_eid = eid_of(leaf)
    if cert_eid is None:
        raise ChainError(ChainReason.MALFORMED, f"{_describe(leaf)}: no EID in subject serialNumber", leaf)
    if not eid_is_valid(cert_eid):
        raise ChainError(ChainReason.INVALID_EID, f"EID {cert_eid} has a bad format or check digits", leaf)
    if expected is not None and expected.upper() != cert_eid.upper():
        raise ChainError(ChainReason.EID_MISMATCH, f"certificate EID {cert_eid} is not the expected {expected}", leaf)
    try:
        subtrees = _ein_subtrees(eum)
    except (ValueError, asn1tools.Error) as exc:
        raise ChainError(ChainReason.MALFORMED, f"{_describe(eum)}: unreadable permitted EINs: {exc}", eum) from exc
    if not subtrees:
        raise ChainError(ChainReason.EID_OUT_OF_RANGE, f"EUM {_describe(eum)} declares no permitted EINs", leaf)
    for ein, constraint in subtrees:
        if not cert_eid.startswith(ein):
            continue
        if constraint is not None:
            mismatched = [
                a
                for a in constraint
                if a.oid != NameOID.SERIAL_NUMBER
                and a.value not in [b.value for b in leaf.subject.get_attributes_for_oid(a.oid)]
            ]
            if mismatched:
                continue
        return cert_eid
    raise ChainError(
        ChainReason.EID_OUT_OF_RANGE,
        f"EID {cert_eid} is outside the EUM's permitted EINs {[e for e, _ in subtrees]}",
        leaf,
    )


def verify_chain(
    leaf,
    intermediates: Iterable = (),
    trusted_cis: Iterable = (),
    *,
    role: Role | str | None = None,
    eid: str | None = None,
    at: _dt.datetime | None = None,
) -> VerifiedChain:
    """Validate ``leaf`` up to one of ``trusted_cis`` (SGP.22 v2.5 §4.5.2.2).

    Checks each link (issuer name, AKI = issuer SKI, ECDSA signature with the issuer key, issuer is a
    CA within its pathLenConstraint), validity at ``at`` (default now) for every certificate including
    the CI, one curve along the chain, the leaf's role policy and key usage when ``role`` is given, and
    for eUICC certificates the EID (valid, equal to ``eid`` if given, inside the EUM's permitted EINs).
    Certificates may be ``x509.Certificate``, :class:`Credential` or DER bytes.
    Raises :class:`ChainError` with a :class:`ChainReason`.
    """
    leaf_cert = _parse(leaf, "leaf")
    pool = [_parse(c, "intermediate") for c in intermediates]
    anchors = [_parse(c, "trusted CI") for c in trusted_cis]
    if not anchors:
        raise ChainError(ChainReason.UNKNOWN_CI, "no trusted CI certificates given", leaf_cert)
    wanted_role = Role(role) if role is not None else None
    when = at or _dt.datetime.now(_dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)

    anchor_ders = {a.public_bytes(serialization.Encoding.DER) for a in anchors}

    def is_anchor(cert: x509.Certificate) -> bool:
        return cert.public_bytes(serialization.Encoding.DER) in anchor_ders

    path = [leaf_cert]
    cur = leaf_cert
    curve = _curve_of(leaf_cert)
    while not is_anchor(cur):
        _check_structure(cur)
        if len(path) > 6:
            raise ChainError(ChainReason.MALFORMED, "certificate path longer than 6", leaf_cert)
        aki = _aki(cur)
        if cur.issuer == cur.subject and (aki is None or aki == _ski(cur)):
            raise ChainError(ChainReason.UNKNOWN_CI, f"self-signed {_describe(cur)} is not a trusted CI", cur)
        candidates = [
            c for c in (*anchors, *pool) if c is not cur and (_ski(c) == aki if aki is not None else c.subject == cur.issuer)
        ]
        if not candidates:
            raise ChainError(
                ChainReason.UNKNOWN_CI,
                f"no trusted CI or given intermediate issued {_describe(cur)} "
                f"(issuer {cur.issuer.rfc4514_string()}, AKI {aki.hex() if aki else '-'})",
                cur,
            )
        issuer = candidates[0]
        if issuer.subject != cur.issuer:
            raise ChainError(
                ChainReason.MALFORMED,
                f"{_describe(cur)}: issuer name {cur.issuer.rfc4514_string()} differs from the subject of the "
                f"certificate with its AKI ({_describe(issuer)})",
                cur,
            )
        if _curve_of(issuer) is not curve:
            raise ChainError(ChainReason.MALFORMED, f"{_describe(cur)}: issuer is on another curve", cur)
        try:
            cur.verify_directly_issued_by(issuer)
        except InvalidSignature:
            raise ChainError(ChainReason.BAD_SIGNATURE, f"signature of {_describe(cur)} does not verify", cur) from None
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ChainError(ChainReason.MALFORMED, f"{_describe(cur)}: cannot verify signature: {exc}", cur) from exc
        is_ca, path_len = _is_ca(issuer)
        if not is_ca:
            raise ChainError(ChainReason.NOT_A_CA, f"{_describe(issuer)} is not a CA but issued {_describe(cur)}", issuer)
        if path_len is not None and len(path) - 1 > path_len:
            raise ChainError(ChainReason.NOT_A_CA, f"{_describe(issuer)}: pathLenConstraint {path_len} exceeded", issuer)
        path.append(issuer)
        cur = issuer
    _check_structure(cur)
    for cert in path:
        _check_dates(cert, when)

    detected = detect_role(leaf_cert)
    if wanted_role is not None:
        _check_leaf_role(leaf_cert, wanted_role)
    effective_role = wanted_role or detected
    found_eid = None
    if effective_role is Role.EUICC:
        if len(path) < 3:
            raise ChainError(ChainReason.WRONG_ROLE, "an eUICC certificate must be issued by an EUM", leaf_cert)
        eum = path[1]
        if detect_role(eum) is not Role.EUM:
            raise ChainError(ChainReason.WRONG_ROLE, f"issuer {_describe(eum)} is not an EUM certificate", eum)
        found_eid = _check_eid(leaf_cert, eum, eid)
    elif eid is not None:
        raise ChainError(ChainReason.WRONG_ROLE, f"an EID was expected but {_describe(leaf_cert)} is not an eUICC", leaf_cert)
    return VerifiedChain(
        leaf=leaf_cert,
        path=tuple(path),
        ci=cur,
        ci_pkid=ci_pkid(cur),
        role=effective_role,
        curve=curve,
        eid=found_eid,
    )


def data_home() -> Path:
    """Where generated material lives by default (test PKI, eUICC states): $SGP32HIL_HOME or the XDG data dir."""
    if os.environ.get("SGP32HIL_HOME"):
        return Path(os.environ["SGP32HIL_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "sgp32-hil"


def default_dir() -> Path:
    """The default PKI folder shared by the software eUICC, the simulated modem and the bundled servers."""
    return data_home() / "pki"


def ensure(directory: str | os.PathLike | None = None, *, quiet: bool = False) -> PkiSet:
    """Load the PKI in ``directory`` (default :func:`default_dir`), generating a test PKI there when empty."""
    root = Path(directory) if directory else default_dir()
    if not (root / "pki.yaml").exists() and not any(root.glob("**/CERT_*.der")):
        if not quiet:
            print(f"generating a test PKI in {root}", file=sys.stderr)
        return generate(root)
    return load(root)
