"""Negative and security cases (SGP.33 "security" family): the eUICC refuses eUICC packages with a bad eIM
signature, a replayed counter or another EID (SGP.32 v1.2 §2.11.1.1, §5.9.1 EuiccPackageErrorCode); the
SM-DP+ refuses an eUICC whose CIs it does not know (SGP.22 §5.6.1, 8.8.2/3.1); the eUICC refuses a
tampered Bound Profile Package (SGP.22 §5.5.5, §2.5.6 SCP03t MAC) and installs nothing.

Packages are built with the bundled eIM's own encoder and sent with ES10b LoadEuiccPackage directly, as a
rogue or faulty eIM/IPA would: the card is the device under test here.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sgp32hil.harness import asn1, flows, pki
from sgp32hil.harness.eim import packages

LIST_PROFILES = {"psmos": [{"listProfileInfo": {}}]}


class _RogueSigner:
    """Signs like an eIM, with a key no eUICC trusts."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def sign(self, data: bytes) -> bytes:
        return pki.sign_plain(self.key, data)


def _package(eim, eid: str, *, signer=None, counter: int, target_eid: str | None = None) -> bytes:
    record = eim.service.euicc(eid)
    return packages.euicc_package_request(
        "psmo", packages.validate("psmo", dict(LIST_PROFILES)), eim=signer or eim.service.credential,
        eim_id=eim.service.eim_id, eid=target_eid or eid, counter_value=counter,
        eim_transaction_id=os.urandom(16), association_token=record.association_token)


def _load(open_es10, der: bytes):
    return flows.es10_read(open_es10, lambda c: c.load_euicc_package(der), "LoadEuiccPackage")


def _used_counter(bench, ipa, eim, eid) -> int:
    """Run one genuine package through the eIM so the card has stored a counter; returns it."""
    oid = flows.order_id(eim.service.create_order(eid, "psmo", **LIST_PROFILES))
    poll = ipa.poll()
    assert not poll.error, poll.error
    order = eim.service.wait_order(oid, bench.budgets.eim_contact)
    assert order.status == "done", f"precondition: a genuine package is accepted ({order.status}: {order.error})"
    return order.counter_value


def _other_eid(eid: str) -> str:
    """Same EUM prefix, another serial, valid ISO 7064 MOD 97-10 check digits."""
    body = eid[:24] + ("1" if eid[24] != "1" else "2") + eid[25:30]
    return body + f"{98 - int(body + '00') % 97:02d}"


@pytest.mark.testcase("HIL-NEG-001", "eUICC package with a bad eIM signature: unsigned error, nothing executed",
                      family="SGP.33 security", story="Bad eIM signature")
def test_bad_eim_signature(bench, bootstrapped, ipa, eim, open_es10, eid):
    counter = _used_counter(bench, ipa, eim, eid)
    outcome = _load(open_es10, _package(eim, eid, signer=_RogueSigner(), counter=counter + 1))
    assert outcome.kind == "error_unsigned", f"a package signed by an unknown key was answered {outcome.kind}"
    assert not outcome.results and outcome.seq_number is None
    # the genuine eIM's next package still goes through: the rogue one consumed no counter value
    assert _used_counter(bench, ipa, eim, eid) == counter + 1


@pytest.mark.testcase("HIL-NEG-002", "Replayed counter value: replayError, nothing executed",
                      family="SGP.33 security", story="Replayed counter")
def test_replayed_counter(bench, bootstrapped, ipa, eim, open_es10, eid):
    counter = _used_counter(bench, ipa, eim, eid)
    outcome = _load(open_es10, _package(eim, eid, counter=counter))
    assert outcome.kind == "error_signed" and outcome.error == "replayError", (outcome.kind, outcome.error)
    assert outcome.counter_value == counter


@pytest.mark.testcase("HIL-NEG-003", "eUICC package for another EID: invalidEid, nothing executed",
                      family="SGP.33 security", story="Wrong EID")
def test_package_for_another_eid(bench, bootstrapped, ipa, eim, open_es10, eid):
    counter = _used_counter(bench, ipa, eim, eid)
    other = _other_eid(eid)
    assert pki.eid_is_valid(other) and other != eid
    outcome = _load(open_es10, _package(eim, eid, counter=counter + 1, target_eid=other))
    assert outcome.kind == "error_signed" and outcome.error == "invalidEid", (outcome.kind, outcome.error)
    assert _used_counter(bench, ipa, eim, eid) == counter + 1


@pytest.mark.testcase("HIL-NEG-004", "SM-DP+ refuses an eUICC whose CI public keys it does not know (8.8.2 / 3.1)",
                      family="SGP.33 security", story="Unknown CI (SM-DP+ side)")
def test_smdp_refuses_unknown_ci(smdp):
    from sgp32hil.harness import es9p
    from sgp32hil.harness.ipa import Es9Client

    unknown = [os.urandom(20)]
    info1 = asn1.encode("EUICCInfo1", {"svn": b"\x02\x05\x00", "euiccCiPKIdListForVerification": unknown,
                                       "euiccCiPKIdListForSigning": unknown})
    with Es9Client(smdp.service.address, ca=smdp.ca_file) as client, pytest.raises(es9p.Es9Error) as err:
        client.initiate_authentication(os.urandom(16), info1)
    assert (err.value.subject_code, err.value.reason_code) == tuple(es9p.SECURITY_CONFIGURATION_UNSUPPORTED)


class _Tampering:
    """An ES9+ client that flips one byte inside the last protected segment of the Bound Profile Package."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_bound_profile_package(self, *args, **kwargs):
        resp = self.inner.get_bound_profile_package(*args, **kwargs)
        bpp = bytearray(resp.bound_profile_package)
        bpp[-10] ^= 0x5A
        return dataclasses.replace(resp, bound_profile_package=bytes(bpp))


@pytest.mark.testcase("HIL-NEG-005", "Tampered Bound Profile Package: the eUICC rejects it, no profile installed",
                      family="SGP.33 security", story="Tampered BPP")
def test_tampered_bpp(bench, without_operational, new_order, smdp, open_es10):
    from sgp32hil.harness.ipa import Es9Client, download_profile

    code = new_order()
    address = code.split("$")[1]
    with open_es10() as client, Es9Client(address, ca=smdp.ca_file) as es9:
        result = download_profile(client, code, es9=_Tampering(es9))
    assert not result.success, "a tampered BPP was installed"
    assert result.error.phase == "LoadBoundProfilePackage", (result.error.phase, result.error.message)
    assert without_operational.iccid not in flows.profiles(open_es10)
