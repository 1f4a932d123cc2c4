"""The eIM at service level (no HTTP): ESipa functions, package signing, result matching and verification,
restart safety, counter monotonicity, policy (SGP.32 v1.2 §2.11, §5.14)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgp32hil.harness import asn1, pki
from sgp32hil.harness.asn1.signed import eim_signature_input, euicc_package_signed, euicc_result_signature_input
from sgp32hil.harness.eim import EimService, EimStore, OrderError, UnknownEid, dispatch, parse_policy

FROM_IPA, FROM_EIM = "EsipaMessageFromIpaToEim", "EsipaMessageFromEimToIpa"
ICCID = "8988247000000000012"


@pytest.fixture(scope="module")
def pki_set(tmp_path_factory):
    return pki.ensure(tmp_path_factory.mktemp("pki"), quiet=True)


@pytest.fixture(scope="module")
def euicc_cred(pki_set):
    return pki_set.euicc()


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "eim.sqlite"


def service(pki_set, db, **kw) -> EimService:
    return EimService(pki_set, EimStore(db), **kw)


@pytest.fixture()
def svc(pki_set, db):
    s = service(pki_set, db)
    yield s
    s.close()


def esipa(svc, value):
    """One ESipa exchange: (status, decoded answer or None)."""
    ans = dispatch(svc, asn1.encode(FROM_IPA, value))
    return ans.status, (asn1.decode(FROM_EIM, ans.body) if ans.body else None)


def poll(svc, eid: str, **extra):
    status, answer = esipa(svc, ("getEimPackageRequest", {"eidValue": bytes.fromhex(eid), **extra}))
    assert status == 200 and answer[0] == "getEimPackageResponse"
    return answer[1]


def raw_poll(svc, eid: str) -> bytes:
    ans = dispatch(svc, asn1.encode(FROM_IPA, ("getEimPackageRequest", {"eidValue": bytes.fromhex(eid)})))
    return ans.body


def signed_result(cred, counter, txid, seq, results, *, eim_id="sgp32hil-eim", token=None, bad_sig=False):
    data = {"eimId": eim_id, "counterValue": counter, "eimTransactionId": txid, "seqNumber": seq,
            "euiccResult": results}
    der = asn1.encode("EuiccPackageResultDataSigned", data)
    sig = cred.sign(euicc_result_signature_input(der, token))
    if bad_sig:
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    return ("euiccPackageResultSigned", {"euiccPackageResultDataSigned": data, "euiccSignEPR": sig})


def provide(svc, eid, epr, with_eid=True):
    body = {"eimPackageResult": ("euiccPackageResult", epr)}
    if with_eid:
        body["eidValue"] = bytes.fromhex(eid)
    status, answer = esipa(svc, ("provideEimPackageResult", body))
    assert status == 200
    return answer[1]


def package_of(answer) -> dict:
    kind, value = answer
    assert kind == "euiccPackageRequest"
    return value["euiccPackageSigned"]


def test_get_eim_package_errors(svc, euicc_cred):
    assert poll(svc, euicc_cred.eid) == ("eimPackageError", 2)  # eidNotFound
    bad = euicc_cred.eid[:-1] + ("0" if euicc_cred.eid[-1] != "0" else "1")
    assert poll(svc, bad) == ("eimPackageError", 3)  # invalidEid (check digits)
    ans = dispatch(svc, bytes.fromhex("bf4f115a0f") + b"\x89" * 15)  # 15-byte EID
    assert asn1.decode(FROM_EIM, ans.body)[1] == ("eimPackageError", 3)
    ans = dispatch(svc, bytes.fromhex("bf4f00"))  # no EID
    assert asn1.decode(FROM_EIM, ans.body)[1] == ("eimPackageError", 4)
    svc.register_euicc(euicc_cred.eid)
    assert poll(svc, euicc_cred.eid) == ("eimPackageError", 1)  # noEimPackageAvailable


def test_accept_unknown_eids(pki_set, db, euicc_cred):
    s = service(pki_set, db, accept_unknown_eids=True)
    assert poll(s, euicc_cred.eid) == ("eimPackageError", 1)
    assert s.euicc(euicc_cred.eid).polls == 1
    s.close()


def test_psmo_package_signed_and_result_verified(svc, pki_set, euicc_cred):
    svc.register_euicc(euicc_cred.eid, euicc_certificate=euicc_cred.der, association_token=7)
    order = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"enable": {"iccid": ICCID, "rollback": True}}])
    assert order.status == "queued"
    body = raw_poll(svc, euicc_cred.eid)
    req = asn1.find(body, ["BF4F", "BF51"]).raw
    part = euicc_package_signed(req)
    assert pki.verify_plain(pki_set.eim(), eim_signature_input(part.data, 7), part.signature)
    pkg = asn1.decode("EuiccPackageSigned", part.data)
    assert pkg["counterValue"] == 1 and pkg["eimId"] == "sgp32hil-eim"
    assert pkg["euiccPackage"][1][0][0] == "enable" and "rollbackFlag" in pkg["euiccPackage"][1][0][1]
    sent = svc.get_order(order.id)
    assert sent.status == "sent" and sent.counter_value == 1
    assert sent.eim_transaction_id == pkg["eimTransactionId"].hex().upper()
    ack = provide(svc, euicc_cred.eid, signed_result(euicc_cred, 1, pkg["eimTransactionId"], 42, [("enableResult", 0)], token=7))
    assert ack == ("eimAcknowledgements", [42])
    done = svc.wait_order(order.id, 1)
    assert done.status == "done" and done.result["enableResult"] == "ok" and done.result["verified"] is True
    kinds = [e.kind for e in svc.events(euicc_cred.eid)]
    assert "package_sent" in kinds and "result" in kinds and "poll" in kinds


def test_bad_result_signature_rejected(svc, euicc_cred):
    svc.register_euicc(euicc_cred.eid, euicc_certificate=euicc_cred.der)
    order = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"disable": {"iccid": ICCID}}])
    pkg = package_of(poll(svc, euicc_cred.eid))
    ack = provide(svc, euicc_cred.eid, signed_result(euicc_cred, pkg["counterValue"], pkg["eimTransactionId"], 3,
                                                [("disableResult", 0)], bad_sig=True))
    assert ack == ("emptyResponse", {})
    failed = svc.get_order(order.id)
    assert failed.status == "failed" and "does not verify" in failed.error


@pytest.mark.parametrize("policy,status,verified", [("verify-if-known", "done", False), ("accept", "done", False),
                                                    ("verify", "failed", None)])
def test_result_policy_without_certificate(svc, euicc_cred, policy, status, verified):
    svc.register_euicc(euicc_cred.eid, result_policy=policy)
    order = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"getRAT": {}}])
    pkg = package_of(poll(svc, euicc_cred.eid))
    provide(svc, euicc_cred.eid, signed_result(euicc_cred, pkg["counterValue"], pkg["eimTransactionId"], 5,
                                          [("getRATResult", [])]))
    got = svc.get_order(order.id)
    assert got.status == status
    if verified is not None:
        assert got.result["verified"] is verified


def test_error_results_and_result_codes(svc, euicc_cred):
    svc.register_euicc(euicc_cred.eid, euicc_certificate=euicc_cred.der)
    o1 = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"enable": {"iccid": ICCID}}])
    pkg = package_of(poll(svc, euicc_cred.eid))
    provide(svc, euicc_cred.eid, signed_result(euicc_cred, pkg["counterValue"], pkg["eimTransactionId"], 6, [("enableResult", 2)]))
    got = svc.get_order(o1.id)
    assert got.status == "failed" and got.result["enableResult"] == "profileNotInDisabledState"
    assert svc.euicc(euicc_cred.eid).failed_attempts == 1
    o2 = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"delete": {"iccid": ICCID}}])
    pkg = package_of(poll(svc, euicc_cred.eid))
    data = {"eimId": "sgp32hil-eim", "counterValue": pkg["counterValue"], "eimTransactionId": pkg["eimTransactionId"],
            "euiccPackageErrorCode": 4}
    sig = euicc_cred.sign(asn1.encode("EuiccPackageErrorDataSigned", data))
    provide(svc, euicc_cred.eid, ("euiccPackageErrorSigned", {"euiccPackageErrorDataSigned": data, "euiccSignEPE": sig}))
    got = svc.get_order(o2.id)
    assert got.status == "failed" and got.error == "euiccPackageError replayError"


def test_restart_between_package_and_result(pki_set, db, euicc_cred):
    s1 = service(pki_set, db)
    s1.register_euicc(euicc_cred.eid, euicc_certificate=euicc_cred.der)
    order = s1.create_order(euicc_cred.eid, "eco", ecos=[{"listEim": {}}])
    pkg = package_of(poll(s1, euicc_cred.eid))
    s1.store._db.close()  # a kill: nothing flushed or closed gracefully
    s2 = service(pki_set, db)
    # the result of the package handed out before the restart still matches (counter + transaction id)
    ack = provide(s2, euicc_cred.eid, signed_result(euicc_cred, pkg["counterValue"], pkg["eimTransactionId"], 9,
                                               [("listEimResult", ("eimIdList", [{"eimId": "sgp32hil-eim"}]))]),
                  with_eid=False)
    assert ack == ("eimAcknowledgements", [9])
    assert s2.get_order(order.id).status == "done"
    s2.close()


def test_reissue_after_restart_uses_new_counter(pki_set, db, euicc_cred):
    s1 = service(pki_set, db)
    s1.register_euicc(euicc_cred.eid)
    order = s1.create_order(euicc_cred.eid, "psmo", psmos=[{"enable": {"iccid": ICCID}}])
    first = package_of(poll(s1, euicc_cred.eid))
    s1.store._db.close()
    s2 = service(pki_set, db)
    second = package_of(poll(s2, euicc_cred.eid))  # the package was lost: re-issued, never with the same counter
    assert second["counterValue"] > first["counterValue"]
    assert second["eimTransactionId"] == first["eimTransactionId"]
    counters = [p.counter_value for p in s2.store.packages(euicc_cred.eid)]
    assert counters == sorted(set(counters)) and len(counters) == 2
    # the late result of the first issue still matches the order
    provide(s2, euicc_cred.eid, signed_result(euicc_cred, first["counterValue"], first["eimTransactionId"], 1,
                                         [("enableResult", 0)]))
    assert s2.get_order(order.id).status == "done"
    s2.close()


def test_counter_strictly_increasing(svc, euicc_cred):
    svc.register_euicc(euicc_cred.eid, counter_value=10)
    seen = []
    for _ in range(5):
        o = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"listProfileInfo": {}}])
        seen.append(package_of(poll(svc, euicc_cred.eid))["counterValue"])
        svc.cancel_order(o.id)
    svc.register_euicc(euicc_cred.eid, counter_value=0)  # never lowers the counter
    svc.create_order(euicc_cred.eid, "psmo", psmos=[{"unsetFallbackAttribute": {}}])
    seen.append(package_of(poll(svc, euicc_cred.eid))["counterValue"])
    assert seen == list(range(11, 17))


def test_all_psmos_and_ecos_encode(svc, euicc_cred, pki_set):
    from cryptography.hazmat.primitives import serialization

    svc.register_euicc(euicc_cred.eid)
    pem = pki_set.eim().public_key.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    svc.create_order(euicc_cred.eid, "psmo", psmos=[
        {"enable": {"iccid": ICCID}}, {"disable": {"iccid": ICCID}}, {"delete": {"iccid": ICCID}},
        {"listProfileInfo": {}}, {"getRAT": {}}, {"configureImmediateEnable": {"enable": True, "smdp_address": "a.b"}},
        {"setFallbackAttribute": {"iccid": ICCID}}, {"unsetFallbackAttribute": {}},
        {"setDefaultDpAddress": {"address": "smdp.example"}}])
    names = [p[0] for p in package_of(poll(svc, euicc_cred.eid))["euiccPackage"][1]]
    assert names == ["enable", "disable", "delete", "listProfileInfo", "getRAT", "configureImmediateEnable",
                     "setFallbackAttribute", "unsetFallbackAttribute", "setDefaultDpAddress"]
    svc.cancel_order(svc.orders(euicc_cred.eid, "sent")[0].id)
    svc.create_order(euicc_cred.eid, "eco", ecos=[
        {"addEim": {"eim_id": "eim2", "fqdn": "eim2.example", "public_key_pem": pem, "counter_value": 0,
                    "association_token": True}},
        {"updateEim": {"eim_id": "eim2", "fqdn": "eim3.example"}}, {"deleteEim": {"eim_id": "eim2"}},
        {"listEim": {}}])
    eco = package_of(poll(svc, euicc_cred.eid))["euiccPackage"]
    assert eco[0] == "ecoList" and [e[0] for e in eco[1]] == ["addEim", "updateEim", "deleteEim", "listEim"]
    assert eco[1][0][1]["eimPublicKeyData"][0] == "eimPublicKey"


@pytest.mark.parametrize("kind,params,field", [
    ("psmo", {"psmos": [{"enable": {"iccid": "12"}}]}, "psmos[0].enable.iccid"),
    ("psmo", {"psmos": [{"frobnicate": {}}]}, "psmos[0]"),
    ("psmo", {"psmos": []}, "psmos"),
    ("psmo", {"psmos": [{"enable": {"iccid": ICCID, "rollback": "yes"}}]}, "psmos[0].enable.rollback"),
    ("eco", {"ecos": [{"addEim": {"eim_id": "x"}}]}, "ecos[0].addEim.public_key_pem"),
    ("download", {"activation_code": "nonsense"}, "activation_code"),
    ("euicc_data", {"tags": ["ZZ"]}, "tags[0]"),
    ("bogus", {}, "kind"),
])
def test_order_validation_names_the_field(svc, euicc_cred, kind, params, field):
    svc.register_euicc(euicc_cred.eid)
    with pytest.raises(OrderError) as exc:
        svc.create_order(euicc_cred.eid, kind, **params)
    assert exc.value.field == field


def test_unknown_eid_order(svc, euicc_cred):
    with pytest.raises(UnknownEid):
        svc.create_order(euicc_cred.eid, "psmo", psmos=[{"getRAT": {}}])


def test_euicc_data_and_certificate_learning(svc, euicc_cred, pki_set):
    svc.register_euicc(euicc_cred.eid, result_policy="verify")
    order = svc.create_order(euicc_cred.eid, "euicc_data", tags=["A6", "A5", "BF20"])
    kind, req = poll(svc, euicc_cred.eid)
    assert kind == "ipaEuiccDataRequest" and req["tagList"] == b"\xa6\xa5\xbf\x20"
    cert = asn1.decode("Certificate", euicc_cred.der)
    eum = asn1.decode("Certificate", pki_set.eum().der)
    info1 = {"svn": b"\x02\x05\x00", "euiccCiPKIdListForVerification": [b"\x01" * 20],
             "euiccCiPKIdListForSigning": [b"\x01" * 20]}
    status, answer = esipa(svc, ("provideEimPackageResult", {"eidValue": bytes.fromhex(euicc_cred.eid), "eimPackageResult": (
        "ipaEuiccDataResponse", ("ipaEuiccData", {"euiccCertificate": cert, "eumCertificate": eum, "euiccInfo1": info1,
                                                  "eimTransactionId": req["eimTransactionId"]}))}))
    assert answer[1] == ("emptyResponse", {})
    assert svc.get_order(order.id).status == "done"
    assert svc.euicc(euicc_cred.eid).euicc_certificate == euicc_cred.der
    assert svc.store.euicc_info1(euicc_cred.eid) == asn1.encode("EUICCInfo1", info1)  # kept for the relay
    # now 'verify' has a certificate to verify with
    o2 = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"getRAT": {}}])
    pkg = package_of(poll(svc, euicc_cred.eid))
    provide(svc, euicc_cred.eid, signed_result(euicc_cred, pkg["counterValue"], pkg["eimTransactionId"], 2, [("getRATResult", [])]))
    assert svc.get_order(o2.id).result["verified"] is True


def test_download_trigger_and_result(svc, euicc_cred):
    svc.register_euicc(euicc_cred.eid)
    order = svc.create_order(euicc_cred.eid, "download", activation_code="LPA:1$smdp.example$MID-1", indirect=False)
    kind, trig = poll(svc, euicc_cred.eid)
    assert kind == "profileDownloadTriggerRequest"
    assert trig["profileDownloadData"] == ("activationCode", "1$smdp.example$MID-1")
    status, answer = esipa(svc, ("provideEimPackageResult", {"eidValue": bytes.fromhex(euicc_cred.eid), "eimPackageResult": (
        "profileDownloadTriggerResult", {"eimTransactionId": trig["eimTransactionId"],
                                         "profileDownloadTriggerResultData": (
                                             "profileDownloadError", {"profileDownloadErrorReason": 127})})}))
    got = svc.get_order(order.id)
    assert got.status == "failed" and "undefinedError" in got.error
    assert svc.euicc(euicc_cred.eid).failed_attempts == 1


def test_ipa_package_error_and_missing_eid(svc, euicc_cred):
    svc.register_euicc(euicc_cred.eid)
    order = svc.create_order(euicc_cred.eid, "psmo", psmos=[{"getRAT": {}}])
    pkg = package_of(poll(svc, euicc_cred.eid))
    status, answer = esipa(svc, ("provideEimPackageResult", {"eimPackageResult": (
        "eimPackageResultResponseError", {"eimTransactionId": pkg["eimTransactionId"],
                                          "eimPackageResultErrorCode": 1})}))
    assert svc.get_order(order.id).error == "IPA reported invalidPackageFormat"
    status, answer = esipa(svc, ("provideEimPackageResult", {"eimPackageResult": (
        "eimPackageResultResponseError", {"eimPackageResultErrorCode": 2})}))
    assert answer[1] == ("provideEimPackageResultError", 4)  # missingEid: nothing to match without an EID
    other = pki.make_eid("89049032", 5)
    status, answer = esipa(svc, ("provideEimPackageResult", {"eidValue": bytes.fromhex(other), "eimPackageResult": (
        "eimPackageResultResponseError", {"eimPackageResultErrorCode": 2})}))
    assert answer[1] == ("provideEimPackageResultError", 2)


def test_state_change_recorded(svc, euicc_cred):
    svc.register_euicc(euicc_cred.eid)
    poll(svc, euicc_cred.eid, notifyStateChange=None, stateChangeCause=1, rPLMN=bytes.fromhex("00F110"))
    rec = svc.euicc(euicc_cred.eid)
    assert rec.last_rplmn == "00F110" and rec.last_state_change_cause == "fallback"
    assert any(e.kind == "state_change" for e in svc.events(euicc_cred.eid))


def test_policy_download_then_enable(pki_set, db, euicc_cred):
    policy = parse_policy({"rules": [
        {"when": {"mcc": "001"}, "download": {"activation_code": "LPA:1$smdp.example$P1"}, "max_attempts": 1},
        {"when": {"failed_attempts_gte": 1}, "enable": {"iccid": ICCID}},
    ]})
    s = service(pki_set, db, policy=policy)
    s.register_euicc(euicc_cred.eid)
    assert poll(s, euicc_cred.eid) == ("eimPackageError", 1)  # no rPLMN, no rule
    kind, trig = poll(s, euicc_cred.eid, rPLMN=bytes.fromhex("00F110"))
    assert kind == "profileDownloadTriggerRequest"
    esipa(s, ("provideEimPackageResult", {"eidValue": bytes.fromhex(euicc_cred.eid), "eimPackageResult": (
        "profileDownloadTriggerResult", {"eimTransactionId": trig["eimTransactionId"],
                                         "profileDownloadTriggerResultData": (
                                             "profileDownloadError", {"profileDownloadErrorReason": 127})})}))
    pkg = package_of(poll(s, euicc_cred.eid))
    assert pkg["euiccPackage"][1][0][0] == "enable"
    assert [e.detail["rule"] for e in s.events(euicc_cred.eid) if e.kind == "policy"] == [0, 1]
    s.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=80),
    st.builds(lambda tag, body: tag + bytes([len(body)]) + body,
              st.sampled_from([b"\xbf\x4f", b"\xbf\x50", b"\xbf\x3d", b"\xbf\x39", b"\xbf\x3b", b"\xbf\x3a",
                               b"\xbf\x41", b"\xbf\x4e"]), st.binary(max_size=60)),
))
def test_fuzz_dispatch_never_crashes(svc, body):
    ans = dispatch(svc, body)
    if ans.status == 200:
        asn1.decode(FROM_EIM, ans.body)
    else:
        assert ans.status in (204, 400) and (ans.status == 400 or ans.body == b"")


def test_notification_forwarding_survives_restart_and_old_databases(pki_set, db, euicc_cred):
    """A notification handed to the eIM for an SM-DP+ is kept until delivered: failures back off, a
    restart keeps the queue, a database from before the forwarding columns is upgraded in place."""
    import sqlite3

    old = sqlite3.connect(db)
    old.executescript("CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, eid TEXT, seq_number "
                      "INTEGER, kind TEXT NOT NULL, transaction_id TEXT, raw BLOB NOT NULL, forwarded_to TEXT, "
                      "received REAL NOT NULL)")
    old.close()
    s = service(pki_set, db)
    s.register_euicc(euicc_cred.eid)
    row = s.store.add_notification(euicc_cred.eid, 7, "otherSignedNotification", None, b"\x30\x00",
                                   forward_address="smdp.test:8443")
    calls = []
    s.relay.forward_notification = lambda address, raw: calls.append(address) or "ConnectError: refused"
    assert s.forward_notifications() == 0 and calls == ["smdp.test:8443"]
    assert s.forward_notifications() == 0 and len(calls) == 1  # backing off
    (note,) = s.store.notifications(euicc_cred.eid)
    assert note["forward_attempts"] == 1 and "refused" in note["forward_error"] and note["forwarded_to"] is None
    s.close()
    s = service(pki_set, db)
    s.FORWARD_BACKOFF_S = 0.0
    s.relay.forward_notification = lambda address, raw: calls.append(address)
    assert s.forward_notifications() == 1 and s.forward_notifications() == 0
    (note,) = s.store.notifications(euicc_cred.eid)
    assert note["forwarded_to"] == "smdp.test:8443" and note["forward_error"] is None and row >= 1
    assert any(e.kind == "notification forwarded" for e in s.events(euicc_cred.eid))
    s.close()
