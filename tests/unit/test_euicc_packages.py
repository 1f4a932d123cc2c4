"""SGP.32 v1.2 eUICC Packages and profile state functions of the software eUICC, in process.

Packages are built and signed here with the PKI's eIM key; results are checked with the eUICC
certificate, the way an eIM would.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgp32hil.drivers.apdu.base import ApduError
from sgp32hil.drivers.es10.client import Es10Client, Es10Error
from sgp32hil.drivers.es10.types import EuiccPackageOutcome
from sgp32hil.drivers.virtual.euicc import packages
from sgp32hil.drivers.virtual.euicc.factory import BootstrapSpec, make_iccid
from sgp32hil.drivers.virtual.euicc.service import SoftEuicc, in_process
from sgp32hil.drivers.virtual.euicc.state import StateStore, dumps
from sgp32hil.harness import asn1, pki
from sgp32hil.harness.asn1 import signed as signed_parts
from tests import der_vectors as der

ICCID2 = make_iccid("890010100000000002")
ICCID3 = make_iccid("890010100000000003")
ICCID4 = make_iccid("890010100000000004")
UNKNOWN = make_iccid("890010100000000099")
BOOT = BootstrapSpec().iccid
EIM_ID = "sgp32hil-eim"

PROVISION = f"""
profiles:
  - iccid: "{ICCID2}"
    imsi: "001010000000002"
    name: Second
    spn: ACME
  - iccid: "{ICCID3}"
    imsi: "001010000000003"
    name: Third
    spn: ACME
  - iccid: "{ICCID4}"
    imsi: "001010000000004"
    name: Sticky
    spn: ACME
    policy_rules: [ppr1]
"""


@pytest.fixture(scope="module")
def pkiset():
    return pki.generate()


@pytest.fixture
def card(tmp_path, pkiset):
    provision = tmp_path / "profiles.yaml"
    provision.write_text(PROVISION)
    euicc, transport = in_process(tmp_path / "state", pkiset, provision=provision)
    refreshes = []
    euicc.isdr.refresh_listeners.append(refreshes.append)
    client = Es10Client(transport).open()
    yield euicc, client, refreshes
    client.close()
    euicc.close()


def iccid(value: str) -> bytes:
    return der.encode_iccid(value)


def build(euicc: SoftEuicc, pkiset, counter: int, items: list, *, kind: str = "psmoList", eim_id: str = EIM_ID,
          key=None, token: int | None = None, eid: str | None = None, tid: bytes | None = b"\x0a\x0b") -> bytes:
    """An EuiccPackageRequest signed like an eIM does: eimSignature over euiccPackageSigned || '84' token."""
    signed = {"eimId": eim_id, "eidValue": bytes.fromhex(eid or euicc.eid), "counterValue": counter,
              "euiccPackage": (kind, items)}
    if tid is not None:
        signed["eimTransactionId"] = tid
    signed_der = asn1.encode("EuiccPackageSigned", signed)
    key = key or pkiset.eim("nist").private_key
    signature = pki.sign_plain(key, signed_parts.eim_signature_input(signed_der, token))
    return asn1.encode("EuiccPackageRequest", {"euiccPackageSigned": signed, "eimSignature": signature})


def euicc_cert(euicc: SoftEuicc) -> x509.Certificate:
    return x509.load_der_x509_certificate(euicc.state.euicc_cert)


def verifies(euicc: SoftEuicc, outcome: EuiccPackageOutcome, token: int | None = None) -> bool:
    data = signed_parts.euicc_result_signature_input(outcome.signed_data, token)
    return pki.verify_plain(euicc_cert(euicc), data, outcome.signature)


def enabled(euicc: SoftEuicc) -> str | None:
    p = euicc.state.enabled_profile()
    return p.iccid if p else None


def assert_persisted(euicc: SoftEuicc) -> None:
    assert dumps(StateStore(euicc.store.directory).load()) == dumps(euicc.state)


# --- LoadEuiccPackage: nominal ---------------------------------------------------------------------


def test_enable_switch_signed_result(card, pkiset):
    euicc, client, refreshes = card
    notes_before = len(euicc.state.notifications)
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID2)})]))
    assert outcome.kind == "result" and outcome.ok
    assert (outcome.eim_id, outcome.counter_value, outcome.eim_transaction_id) == (EIM_ID, 1, b"\x0a\x0b")
    assert outcome.named_results() == [("enableResult", "ok")]
    assert verifies(euicc, outcome)
    assert asn1.encode("EuiccPackageResult", asn1.decode("EuiccPackageResult", outcome.der)) == outcome.der
    assert enabled(euicc) == ICCID2
    assert euicc.state.eim(EIM_ID).counter_value == 1
    assert [r.seq_number for r in euicc.state.package_results] == [outcome.seq_number]
    # disable and enable notifications first; the result's seqNumber follows theirs
    notes = euicc.state.notifications[notes_before:]
    assert [n.event for n in notes] == ["disable", "enable"]
    assert outcome.seq_number > notes[-1].seq_number
    assert [(r.reason, r.enabled_iccid, r.disabled_iccid) for r in refreshes] == [
        ("euicc-package", ICCID2, BOOT)]
    assert_persisted(euicc)


def test_list_and_info_psmos(card, pkiset):
    euicc, client, _ = card
    outcome = client.load_euicc_package(build(euicc, pkiset, 5, [
        ("listProfileInfo", {"searchCriteria": ("iccid", iccid(ICCID2))}),
        ("getRAT", {}),
        ("configureImmediateEnable", {"immediateEnableFlag": None, "defaultSmdpAddress": "smdp.example.com"}),
        ("setDefaultDpAddress", {"defaultDpAddress": "dp.example.com"}),
    ]))
    assert outcome.ok
    names = [n for n, _ in outcome.results]
    assert names == ["listProfileInfoResult", "getRATResult", "configureImmediateEnableResult",
                     "setDefaultDpAddressResult"]
    kind, infos = outcome.results[0][1]
    assert kind == "profileInfoListOk" and [i["iccid"] for i in infos] == [iccid(ICCID2)]
    assert outcome.results[1][1][0]["pprIds"] == (b"\x20", 3)
    assert euicc.state.immediate_enable and euicc.state.default_smdp_for_immediate == "smdp.example.com"
    assert client.get_euicc_configured_addresses().default_dp_address == "dp.example.com"


# --- LoadEuiccPackage: errors ----------------------------------------------------------------------


def test_replay_is_a_signed_error(card, pkiset):
    euicc, client, _ = card
    request = build(euicc, pkiset, 7, [("getRAT", {})])
    assert client.load_euicc_package(request).ok
    state = dumps(euicc.state)
    again = client.load_euicc_package(request)
    assert (again.kind, again.error, again.error_code) == ("error_signed", "replayError", 4)
    assert again.counter_value == 7 and again.eim_transaction_id == b"\x0a\x0b"
    assert verifies(euicc, again)
    lower = client.load_euicc_package(build(euicc, pkiset, 6, [("getRAT", {})]))
    assert lower.error == "replayError"
    assert dumps(euicc.state) == state


@pytest.mark.parametrize("counter", [packages.COUNTER_MAX + 1, 0, -1])
def test_counter_out_of_range(card, pkiset, counter):
    euicc, client, _ = card
    outcome = client.load_euicc_package(build(euicc, pkiset, counter, [("getRAT", {})]))
    assert outcome.error == "counterValueOutOfRange" and verifies(euicc, outcome)
    assert client.load_euicc_package(build(euicc, pkiset, packages.COUNTER_MAX, [("getRAT", {})])).ok


def test_wrong_eid(card, pkiset):
    euicc, client, _ = card
    other = pki.make_eid(pkiset.eum_eins[0], 12345)
    assert other != euicc.eid
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [("getRAT", {})], eid=other))
    assert outcome.error == "invalidEid" and verifies(euicc, outcome)
    assert euicc.state.eim(EIM_ID).counter_value == 0


def test_bad_signature_is_unsigned_error(card, pkiset):
    euicc, client, _ = card
    stranger = pki.KeyPair.generate("nist").private_key
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID2)})],
                                              key=stranger))
    assert outcome.kind == "error_unsigned" and outcome.eim_id == EIM_ID
    assert outcome.eim_transaction_id == b"\x0a\x0b" and outcome.association_token is None
    assert enabled(euicc) == BOOT and euicc.state.eim(EIM_ID).counter_value == 0
    # a flipped bit in the signed part, signature unchanged
    good = bytearray(build(euicc, pkiset, 1, [("getRAT", {})]))
    good[good.index(b"\x81\x01\x01") + 2] = 2
    assert client.load_euicc_package(bytes(good)).kind == "error_unsigned"


def test_unknown_eim(card, pkiset):
    euicc, client, _ = card
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [("getRAT", {})], eim_id="nobody"))
    assert (outcome.kind, outcome.eim_id) == ("error_unsigned", "nobody")
    assert outcome.der[:2] == b"\xbf\x51"


def test_size_overflow(card, pkiset):
    euicc, client, _ = card
    big = [("setDefaultDpAddress", {"defaultDpAddress": "x" * 200})] * 50
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, big))
    assert outcome.error == "sizeOverflow" and verifies(euicc, outcome)


def test_out_of_constraint_transaction_id_is_a_signed_error(card, pkiset):
    euicc, client, _ = card
    signed = {"eimId": EIM_ID, "eidValue": bytes.fromhex(euicc.eid), "counterValue": 1,
              "eimTransactionId": bytes(17), "euiccPackage": ("psmoList", [("getRAT", {})])}
    signed_der = asn1.encode("EuiccPackageSigned", signed, check_constraints=False)
    signature = pki.sign_plain(pkiset.eim("nist").private_key, signed_der)
    request = der.tlv(0xBF51, signed_der + der.tlv(0x5F37, signature))
    outcome = client.load_euicc_package(request)
    assert (outcome.kind, outcome.error, outcome.eim_transaction_id) == ("error_signed", "undefinedError", None)
    assert euicc.state.eim(EIM_ID).counter_value == 0


# --- atomicity, stop on failure ---------------------------------------------------------------------


def test_failing_psmo_stops_the_package(card, pkiset):
    euicc, client, refreshes = card
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [
        ("enable", {"iccid": iccid(ICCID2)}),
        ("delete", {"iccid": iccid(UNKNOWN)}),
        ("delete", {"iccid": iccid(ICCID3)}),
    ]))
    assert outcome.kind == "result" and not outcome.ok
    assert outcome.named_results() == [("enableResult", "ok"), ("deleteResult", "iccidOrAidNotFound")]
    assert enabled(euicc) == ICCID2 and euicc.state.profile(ICCID3) is not None
    assert sum(p.state == "enabled" for p in euicc.state.profiles) == 1
    assert euicc.state.eim(EIM_ID).counter_value == 1
    assert len(refreshes) == 1
    assert_persisted(euicc)


def test_failed_commit_leaves_state_untouched(card, pkiset, monkeypatch):
    euicc, client, refreshes = card
    before = dumps(euicc.state)

    def broken(state):
        raise OSError("disk full")

    monkeypatch.setattr(euicc.store, "save", broken)
    request = build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID2)}), ("delete", {"iccid": iccid(ICCID3)})])
    with pytest.raises(ApduError) as err:
        client.load_euicc_package(request)
    assert err.value.sw == 0x6581
    assert dumps(euicc.state) == before and refreshes == []
    monkeypatch.undo()
    assert client.load_euicc_package(request).ok


def test_ppr1_and_cat_busy(card, pkiset):
    euicc, client, _ = card
    assert client.load_euicc_package(build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID4)})])).ok
    blocked = client.load_euicc_package(build(euicc, pkiset, 2, [("enable", {"iccid": iccid(ICCID2)})]))
    assert blocked.named_results() == [("enableResult", "disallowedByPolicy")]
    assert enabled(euicc) == ICCID4
    not_enabled = client.load_euicc_package(build(euicc, pkiset, 3, [("disable", {"iccid": iccid(ICCID3)})]))
    assert not_enabled.named_results() == [("disableResult", "profileNotInEnabledState")]


def test_cat_busy_blocks_a_switch(card, pkiset):
    euicc, client, refreshes = card
    euicc.isdr.cat_busy = True
    busy = client.load_euicc_package(build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID2)})]))
    assert busy.named_results() == [("enableResult", "catBusy")]
    assert enabled(euicc) == BOOT and refreshes == []


# --- rollback ---------------------------------------------------------------------------------------


def test_rollback(card, pkiset):
    euicc, client, refreshes = card
    with pytest.raises(Es10Error) as err:
        client.profile_rollback()
    assert err.value.name == "rollbackNotAllowed"
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [
        ("enable", {"iccid": iccid(ICCID2), "rollbackFlag": None})]))
    assert outcome.ok and enabled(euicc) == ICCID2
    rolled = client.profile_rollback()
    assert enabled(euicc) == BOOT
    assert rolled is not None and rolled.kind == "result" and verifies(euicc, rolled)
    assert rolled.named_results() == [("enableResult", "ok"), ("rollbackResult", "ok")]
    assert (rolled.counter_value, rolled.eim_transaction_id) == (1, b"\x0a\x0b")
    assert rolled.seq_number > outcome.seq_number
    # the rolled-back package's result is replaced by the rollback's one
    assert client.retrieve_euicc_package_results() == [rolled.der]
    assert refreshes[-1].reason == "rollback" and refreshes[-1].enabled_iccid == BOOT
    with pytest.raises(Es10Error):
        client.profile_rollback()
    assert_persisted(euicc)


def test_rollback_ends_with_acknowledgement(card, pkiset):
    euicc, client, _ = card
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [
        ("enable", {"iccid": iccid(ICCID2), "rollbackFlag": None})]))
    client.remove_notification_from_list(outcome.seq_number)
    with pytest.raises(Es10Error) as err:
        client.profile_rollback()
    assert err.value.name == "rollbackNotAllowed" and enabled(euicc) == ICCID2


# --- fallback ---------------------------------------------------------------------------------------


def test_fallback_attribute_and_mechanism(card, pkiset):
    euicc, client, refreshes = card
    # the bootstrap profile holds the attribute and is enabled
    moved = client.load_euicc_package(build(euicc, pkiset, 1, [("setFallbackAttribute", {"iccid": iccid(ICCID3)})]))
    assert moved.named_results() == [("setFallbackAttributeResult", "fallbackProfileEnabled")]
    with pytest.raises(Es10Error) as err:
        client.execute_fallback_mechanism()
    assert err.value.name == "profileNotInDisabledState"
    with pytest.raises(Es10Error) as err:
        client.return_from_fallback()
    assert err.value.name == "fallbackNotAvailable"
    assert client.load_euicc_package(build(euicc, pkiset, 2, [
        ("enable", {"iccid": iccid(ICCID2)}), ("setFallbackAttribute", {"iccid": iccid(ICCID3)})])).ok
    assert euicc.state.fallback_profile().iccid == ICCID3
    assert not euicc.state.profile(BOOT).fallback_attribute
    client.execute_fallback_mechanism()
    assert enabled(euicc) == ICCID3 and euicc.state.fallback_active_from == ICCID2
    assert (refreshes[-1].reason, refreshes[-1].disabled_iccid) == ("fallback", ICCID2)
    client.return_from_fallback()
    assert enabled(euicc) == ICCID2 and euicc.state.fallback_active_from == ""
    with pytest.raises(Es10Error) as err:
        client.return_from_fallback()
    assert err.value.name == "fallbackNotAvailable"
    unset = client.load_euicc_package(build(euicc, pkiset, 3, [("unsetFallbackAttribute", {}),
                                                                ("unsetFallbackAttribute", {})]))
    assert unset.named_results() == [("unsetFallbackAttributeResult", "ok"),
                                     ("unsetFallbackAttributeResult", "noFallbackAttribute")]
    with pytest.raises(Es10Error) as err:
        client.execute_fallback_mechanism()
    assert err.value.name == "fallbackNotAvailable"
    assert_persisted(euicc)


def test_fallback_not_allowed_by_metadata(card, pkiset):
    euicc, client, _ = card
    draft = euicc.isdr._draft()
    draft.profile(ICCID2).fallback_allowed = False
    euicc.isdr._commit(draft)
    outcome = client.load_euicc_package(build(euicc, pkiset, 1, [("setFallbackAttribute", {"iccid": iccid(ICCID2)})]))
    assert outcome.named_results() == [("setFallbackAttributeResult", "fallbackNotAllowed")]


def test_fallback_cat_busy(card):
    euicc, client, _ = card
    draft = euicc.isdr._draft()
    draft.profile(BOOT).state = "disabled"
    draft.profile(ICCID2).state = "enabled"
    euicc.isdr._commit(draft)
    euicc.isdr.cat_busy = True
    with pytest.raises(Es10Error) as err:
        client.execute_fallback_mechanism()
    assert err.value.name == "catBusy"
    client.execute_fallback_mechanism(refresh=False)
    assert enabled(euicc) == BOOT


# --- immediate enable ------------------------------------------------------------------------------


def test_immediate_enable_configuration(card, pkiset):
    euicc, client, _ = card
    with pytest.raises(Es10Error) as err:
        client.configure_immediate_profile_enabling(True)
    assert err.value.name == "associatedEimAlreadyExists"
    with pytest.raises(Es10Error) as err:
        client.immediate_enable()
    assert err.value.name == "immediateEnableNotAvailable"
    assert client.load_euicc_package(build(euicc, pkiset, 1, [("configureImmediateEnable",
                                                                {"immediateEnableFlag": None})])).ok
    with pytest.raises(Es10Error) as err:
        client.immediate_enable()
    assert err.value.name == "noSessionContext"
    euicc.isdr.session.installed_iccid = ICCID2
    client.immediate_enable()
    assert enabled(euicc) == ICCID2
    with pytest.raises(Es10Error) as err:
        client.immediate_enable()
    assert err.value.name == "noSessionContext"


# --- eCOs -------------------------------------------------------------------------------------------


def eim_config(pkiset, eim_id: str, key, *, token: bool = False) -> dict:
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    config = {"eimId": eim_id, "eimFqdn": "eim2.example.com", "eimIdType": 3, "counterValue": 10,
              "eimPublicKeyData": ("eimPublicKey", asn1.decode("SubjectPublicKeyInfo", spki))}
    if token:
        config["associationToken"] = 0
    return config


def test_add_eim_with_token_then_its_package(card, pkiset):
    euicc, client, _ = card
    key2 = pki.KeyPair.generate("nist").private_key
    added = client.load_euicc_package(build(euicc, pkiset, 1, [("addEim", eim_config(pkiset, "eim-2", key2, token=True)),
                                                                ("listEim", {})], kind="ecoList"))
    assert added.ok
    (name, (alt, token)), (_, (_, ids)) = added.results
    assert (name, alt) == ("addEimResult", "associationToken") and token >= 1
    assert [i["eimId"] for i in ids] == [EIM_ID, "eim-2"]
    assert euicc.state.eim("eim-2").association_token == token
    # eim-2's packages are signed over euiccPackageSigned || '84' token; so are the eUICC's answers
    without = client.load_euicc_package(build(euicc, pkiset, 11, [("getRAT", {})], eim_id="eim-2", key=key2))
    assert without.kind == "error_unsigned" and without.association_token == token
    replay = client.load_euicc_package(build(euicc, pkiset, 10, [("getRAT", {})], eim_id="eim-2", key=key2,
                                             token=token))
    assert replay.error == "replayError"
    assert verifies(euicc, replay, token) and not verifies(euicc, replay)
    ok = client.load_euicc_package(build(euicc, pkiset, 11, [("getRAT", {})], eim_id="eim-2", key=key2,
                                         token=token))
    assert ok.ok and verifies(euicc, ok, token)
    assert [c.eim_id for c in client.get_eim_configuration_data()] == [EIM_ID, "eim-2"]
    again = client.load_euicc_package(build(euicc, pkiset, 2, [("addEim", eim_config(pkiset, "eim-2", key2))],
                                            kind="ecoList"))
    assert again.named_results() == [("addEimResult", ("addEimResultCode", 2))]


def test_update_and_delete_eim(card, pkiset):
    euicc, client, _ = card
    key2 = pki.KeyPair.generate("nist").private_key
    assert client.load_euicc_package(build(euicc, pkiset, 1, [("addEim", eim_config(pkiset, "eim-2", key2))],
                                           kind="ecoList")).ok
    updated = client.load_euicc_package(build(euicc, pkiset, 2, [
        ("updateEim", {"eimId": "eim-2", "eimFqdn": "new.example.com", "counterValue": 20}),
        ("updateEim", {"eimId": "ghost"})], kind="ecoList"))
    assert updated.named_results() == [("updateEimResult", "ok"), ("updateEimResult", "eimNotFound")]
    assert euicc.state.eim("eim-2").eim_fqdn == "new.example.com" and euicc.state.eim("eim-2").counter_value == 20
    deleted = client.load_euicc_package(build(euicc, pkiset, 3, [("deleteEim", {"eimId": "eim-2"}),
                                                                  ("deleteEim", {"eimId": "eim-2"})], kind="ecoList"))
    assert deleted.named_results() == [("deleteEimResult", "ok"), ("deleteEimResult", "eimNotFound")]
    gone = client.load_euicc_package(build(euicc, pkiset, 21, [("getRAT", {})], eim_id="eim-2", key=key2))
    assert gone.kind == "error_unsigned"
    last = client.load_euicc_package(build(euicc, pkiset, 4, [("deleteEim", {"eimId": EIM_ID})], kind="ecoList"))
    assert last.ok and last.named_results() == [("deleteEimResult", "lastEimDeleted")]
    assert euicc.state.eims == []


# --- results: retrieval, acknowledgement, one seqNumber space -------------------------------------


def test_results_retrieved_and_removed(card, pkiset):
    euicc, client, _ = card
    first = client.load_euicc_package(build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID2)})]))
    second = client.load_euicc_package(build(euicc, pkiset, 2, [("getRAT", {})]))
    assert client.retrieve_euicc_package_results() == [first.der, second.der]
    listed = client.retrieve_notifications_list(euicc_package_results=True)
    assert [(n.kind, n.seq_number) for n in listed] == [("euiccPackageResult", first.seq_number),
                                                         ("euiccPackageResult", second.seq_number)]
    notification_seqs = {n.seq_number for n in client.retrieve_notifications_list()}
    assert notification_seqs and not notification_seqs & {first.seq_number, second.seq_number}
    client.remove_notification_from_list(first.seq_number)
    assert client.retrieve_euicc_package_results() == [second.der]
    with pytest.raises(Es10Error) as err:
        client.remove_notification_from_list(first.seq_number)
    assert err.value.name == "nothingToDelete"
    assert {n.seq_number for n in client.retrieve_notifications_list()} == notification_seqs


def test_state_survives_reload(tmp_path, pkiset):
    provision = tmp_path / "profiles.yaml"
    provision.write_text(PROVISION)
    euicc, transport = in_process(tmp_path / "state", pkiset, provision=provision)
    with Es10Client(transport) as client:
        outcome = client.load_euicc_package(build(euicc, pkiset, 3, [
            ("enable", {"iccid": iccid(ICCID2), "rollbackFlag": None})]))
    request = build(euicc, pkiset, 3, [("getRAT", {})])
    euicc.close()
    euicc, transport = in_process(tmp_path / "state", pkiset)
    try:
        with Es10Client(transport) as client:
            assert enabled(euicc) == ICCID2
            assert client.retrieve_euicc_package_results() == [outcome.der]
            assert client.load_euicc_package(request).error == "replayError"
            assert client.profile_rollback(refresh=False).named_results()[-1] == ("rollbackResult", "ok")
            assert enabled(euicc) == BOOT
    finally:
        euicc.close()


# --- robustness -------------------------------------------------------------------------------------


def _answer_is_clean(client: Es10Client, command: bytes) -> None:
    try:
        outcome = client.load_euicc_package(command)
    except ApduError as exc:
        assert exc.sw == 0x6A80, repr(exc)
        return
    assert outcome.der[:2] == b"\xbf\x51"
    assert outcome.kind in ("error_unsigned", "error_signed", "result")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_load_euicc_package(card, pkiset, data):
    euicc, client, _ = card
    valid = build(euicc, pkiset, 1, [("enable", {"iccid": iccid(ICCID2)}), ("getRAT", {})])
    choice = data.draw(st.sampled_from(["random", "truncated", "flipped", "body", "signed_body"]))
    if choice == "random":
        command = b"\xbf\x51" + data.draw(st.binary(max_size=300))
    elif choice == "truncated":
        command = valid[:data.draw(st.integers(1, len(valid) - 1))]
    elif choice == "flipped":
        pos = data.draw(st.integers(2, len(valid) - 1))  # the BF51 tag stays: other tags are other functions
        command = valid[:pos] + bytes([valid[pos] ^ data.draw(st.integers(1, 255))]) + valid[pos + 1:]
    elif choice == "body":
        body = data.draw(st.binary(max_size=200))
        command = der.tlv(0xBF51, der.tlv(0x30, der.tlv(0x80, EIM_ID.encode()) + body) + der.tlv(0x5F37, bytes(64)))
    else:  # correctly signed by the eIM, so it reaches decoding and execution
        signed = der.tlv(0x30, der.tlv(0x80, EIM_ID.encode()) + data.draw(st.binary(max_size=200)))
        signature = pki.sign_plain(pkiset.eim("nist").private_key, signed)
        command = der.tlv(0xBF51, signed + der.tlv(0x5F37, signature))
    before = dumps(euicc.state)
    _answer_is_clean(client, command)
    if dumps(euicc.state) != before:
        assert euicc.state.eim(EIM_ID).counter_value >= 1
    assert sum(p.state == "enabled" for p in euicc.state.profiles) <= 1
    assert client.get_eid() == euicc.eid


# --- immediate enable after a real download ---------------------------------------------------------


def test_immediate_enable_after_direct_download(tmp_path_factory, tmp_path):
    from urllib.parse import urlparse

    from sgp32hil.harness.ipa import download_profile
    from sgp32hil.harness.saip import make_profile
    from sgp32hil.harness.smdp import run_in_thread

    dl_pki = pki.generate(tmp_path_factory.mktemp("pki"))
    new_iccid, imsi = "8949001234567890128", "001010123456789"
    euicc, transport = in_process(tmp_path / "euicc", dl_pki)
    try:
        with run_in_thread(dl_pki.root, tmp_path / "smdp.db") as smdp, Es10Client(transport) as client:
            smdp.service.address = f"127.0.0.1:{urlparse(smdp.es9_url).port}"
            smdp.store.add_order("MID-IE", package=make_profile(new_iccid, imsi, apn="internet", name="IE"),
                                 imsi=imsi, name="IE")
            assert client.load_euicc_package(build(euicc, dl_pki, 1, [("configureImmediateEnable", {
                "immediateEnableFlag": None, "defaultSmdpAddress": smdp.service.address})])).ok
            result = download_profile(client, f"LPA:1${smdp.service.address}$MID-IE", ca=smdp.ca_file)
            assert result.success, result.error
            assert euicc.state.profile(new_iccid).state == "disabled"
            client.immediate_enable(refresh=False)
            assert enabled(euicc) == new_iccid
            assert_persisted(euicc)
    finally:
        euicc.close()
