"""The eIM over real HTTPS on loopback: ESipa ASN.1 binding (SGP.32 v1.2 §6.1/§6.3), transport errors, the
operator REST API and its OpenAPI document, the indirect download relay against the bundled SM-DP+."""

from __future__ import annotations

import ssl
from urllib.parse import urlparse

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgp32hil.harness import asn1, es9p, pki, smdp
from sgp32hil.harness.eim import CONTENT_TYPE, ESIPA_PATH, MAX_BODY, run_in_thread
from sgp32hil.harness.smdp import ProfileState
from tests.unit.test_smdp_service import ICCID, PACKAGE, EuiccRole

FROM_IPA, FROM_EIM = "EsipaMessageFromIpaToEim", "EsipaMessageFromEimToIpa"
HEADERS = {"Content-Type": CONTENT_TYPE, "X-Admin-Protocol": "gsma/rsp/v2.1.0", "User-Agent": "gsma-rsp-ipad"}


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pki")
    pki.ensure(path, quiet=True)
    return path


@pytest.fixture(scope="module")
def pki_set(pki_dir):
    return pki.ensure(pki_dir, quiet=True)


@pytest.fixture(scope="module")
def running(pki_dir, tmp_path_factory):
    with run_in_thread(pki_dir, tmp_path_factory.mktemp("eim") / "eim.sqlite") as eim:
        yield eim


def client(eim) -> httpx.Client:
    return httpx.Client(base_url=eim.url, verify=ssl.create_default_context(cafile=str(eim.ca_file)), timeout=30)


def post(http, body: bytes, headers=HEADERS) -> httpx.Response:
    return http.post(ESIPA_PATH, content=body, headers=headers)


def esipa(http, value):
    r = post(http, asn1.encode(FROM_IPA, value))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE
    return r, asn1.decode(FROM_EIM, r.content)


def test_poll_and_transport_errors(running, pki_set):
    eid = pki_set.euicc().eid
    with client(running) as http:
        get = ("getEimPackageRequest", {"eidValue": bytes.fromhex(eid)})
        _, answer = esipa(http, get)
        assert answer == ("getEimPackageResponse", ("eimPackageError", 2))
        running.service.register_euicc(eid)
        for _ in range(3):  # keep-alive: the same connection answers every poll
            r, answer = esipa(http, get)
            assert answer == ("getEimPackageResponse", ("eimPackageError", 1))
            assert r.headers["x-admin-protocol"] == "gsma/rsp/v2.1.0"
        der = asn1.encode(FROM_IPA, get)
        assert post(http, der, {**HEADERS, "Content-Type": "application/json"}).status_code == 415
        assert post(http, der, {"X-Admin-Protocol": "gsma/rsp/v2.1.0"}).status_code == 415
        assert post(http, b"\x00" * (MAX_BODY + 1)).status_code == 413
        assert post(http, b"").status_code == 400
        assert post(http, der[:-3]).status_code == 400  # truncated
        assert post(http, b"\x30\x00").status_code == 400  # not an ESipa message
        assert http.get(ESIPA_PATH).status_code == 405
        # a known function with broken content gets its own error answer
        r = post(http, bytes.fromhex("bf4f00"))
        assert asn1.decode(FROM_EIM, r.content) == ("getEimPackageResponse", ("eimPackageError", 4))
        assert running.service.euicc(eid).polls >= 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=64), st.builds(
    lambda tag, body: tag + bytes([len(body)]) + body,
    st.sampled_from([b"\xbf\x4f", b"\xbf\x50", b"\xbf\x3d", b"\xbf\x39", b"\xbf\x3b", b"\xbf\x3a", b"\xbf\x41"]),
    st.binary(max_size=60))))
def test_fuzz_over_https(running, body):
    with client(running) as http:
        r = post(http, body)
    if r.status_code == 200:
        asn1.decode(FROM_EIM, r.content)
    else:
        assert r.status_code in (204, 400), r.status_code


def test_rest_api_and_openapi(running, pki_set):
    eid = pki.make_eid(pki_set.eum_eins[0], 4242)
    with client(running) as http:
        r = http.post("/api/v1/euiccs", json={"eid": eid, "counter_value": 3})
        assert r.status_code == 201 and r.json()["counter_value"] == 3
        assert http.post("/api/v1/euiccs", json={"eid": "123"}).json()["field"] == "eid"
        r = http.post("/api/v1/orders", json={"eid": eid, "kind": "psmo",
                                              "psmos": [{"enable": {"iccid": "8988247000000000012"}}]})
        assert r.status_code == 201
        order = r.json()
        bad = http.post("/api/v1/orders", json={"eid": eid, "kind": "psmo", "psmos": [{"enable": {"iccid": "1"}}]})
        assert bad.status_code == 400 and bad.json()["field"] == "psmos[0].enable.iccid"
        assert http.post("/api/v1/orders", json={"eid": pki.make_eid(pki_set.eum_eins[0], 777), "kind": "psmo",
                                                 "psmos": [{"getRAT": {}}]}).status_code == 404
        assert http.get(f"/api/v1/orders/{order['id']}").json()["status"] == "queued"
        _, answer = esipa(http, ("getEimPackageRequest", {"eidValue": bytes.fromhex(eid)}))
        assert answer[1][0] == "euiccPackageRequest"
        assert answer[1][1]["euiccPackageSigned"]["counterValue"] == 4
        got = http.get(f"/api/v1/orders/{order['id']}", params={"wait": "0.2"}).json()
        assert got["status"] == "sent" and got["counter_value"] == 4
        assert http.delete(f"/api/v1/orders/{order['id']}").json()["status"] == "cancelled"
        assert http.delete(f"/api/v1/orders/{order['id']}").status_code == 409
        assert http.get("/api/v1/orders/999999").status_code == 404
        assert eid in [e["eid"] for e in http.get("/api/v1/euiccs").json()["euiccs"]]
        assert http.get(f"/api/v1/euiccs/{eid}").json()["polls"] >= 1
        kinds = [e["kind"] for e in http.get(f"/api/v1/euiccs/{eid}/events").json()["events"]]
        assert {"registered", "order_created", "package_sent", "order_cancelled", "poll"} <= set(kinds)
        doc = http.get("/api/v1/openapi.json").json()
        assert doc["openapi"].startswith("3.")
        # every documented path and method exists (anything but 404-for-route / 405)
        for path, methods in doc["paths"].items():
            url = path.replace("{order_id}", str(order["id"])).replace("{eid}", eid)
            for method in methods:
                r = http.request(method.upper(), url, json={} if method == "post" else None)
                assert r.status_code != 405, (method, path)
                assert r.status_code != 404 or "error" in r.json(), (method, path)
        # every $ref resolves
        import json
        text = json.dumps(doc)
        for name in {p.split('"')[0] for p in text.split('#/components/schemas/')[1:]}:
            assert name in doc["components"]["schemas"]


def test_cli_euicc_shows_state_notifications_and_events(running, pki_set, capsys):
    from sgp32hil.harness.cli import main

    eid = pki.make_eid(pki_set.eum_eins[0], 4343)
    running.service.register_euicc(eid, counter_value=5)
    running.service.store.add_notification(eid, 9, "otherSignedNotification", None, b"\x30\x00",
                                           forward_address="smdp.test:8443")
    base = ["eim", "euicc", "--eim", running.url, "--ca", str(running.ca_file)]
    assert main([*base, eid]) == 0
    out = capsys.readouterr().out
    assert f"eUICC {eid}" in out and "counter value      5" in out
    assert "seq    9  otherSignedNotification" in out and "to forward to smdp.test:8443" in out
    assert "registered" in out.split("Events")[1]
    assert main([*base, pki.make_eid(pki_set.eum_eins[0], 4344)]) == 1
    assert "not registered" in capsys.readouterr().err


def _raw_children(der: bytes) -> list:
    return asn1.parse_single(der).children()[0].children()


def test_indirect_download_relay(pki_dir, pki_set, tmp_path):
    with smdp.run_in_thread(pki_dir, tmp_path / "smdp.sqlite") as dp, \
            run_in_thread(pki_dir, tmp_path / "eim.sqlite") as eim, client(eim) as http:
        dp.service.address = f"127.0.0.1:{urlparse(dp.es9_url).port}"
        dp.store.add_order("MID-1", package=PACKAGE, name="Relay")
        euicc = EuiccRole(pki_set)
        eim.service.register_euicc(euicc.eid)
        order = eim.service.create_order(euicc.eid, "download", activation_code=f"LPA:1${dp.service.address}$MID-1",
                                         indirect=True)
        _, (_, (kind, trig)) = esipa(http, ("getEimPackageRequest", {"eidValue": bytes.fromhex(euicc.eid)}))
        assert kind == "profileDownloadTriggerRequest"
        txe = trig["eimTransactionId"]
        init_req = euicc.initiate_request(dp.service.address)
        # wrong eimTransactionId -> invalidEimTransactionId
        _, bad = esipa(http, ("initiateAuthenticationRequestEsipa", {
            "euiccChallenge": init_req.euicc_challenge, "euiccInfo1": asn1.decode("EUICCInfo1", init_req.euicc_info1),
            "eimTransactionId": b"\x00" * 16}))
        assert bad == ("initiateAuthenticationResponseEsipa", ("initiateAuthenticationErrorEsipa", 52))
        # no euiccInfo1 and none learnt from an IpaEuiccData yet -> undefinedError
        _, bad = esipa(http, ("initiateAuthenticationRequestEsipa", {
            "euiccChallenge": init_req.euicc_challenge, "eimTransactionId": txe}))
        assert bad == ("initiateAuthenticationResponseEsipa", ("initiateAuthenticationErrorEsipa", 127))
        # once the eIM holds the card's EUICCInfo1 the IPA may leave it out
        eim.service.store.set_euicc_info1(euicc.eid, init_req.euicc_info1)
        body = (b"\x81\x10" + init_req.euicc_challenge + b"\x82\x10" + txe)
        r = post(http, b"\xbf\x39" + bytes([len(body)]) + body)
        ch = _raw_children(r.content)
        init = es9p.InitiateAuthenticationResponse(
            transaction_id=ch[0].value, server_signed1=ch[1].raw, server_signature1=ch[2].raw,
            euicc_ci_pkid_to_be_used=ch[3].raw, server_certificate=ch[4].raw)
        auth_req = euicc.authenticate_server(init, "MID-1")
        r = post(http, asn1.encode(FROM_IPA, ("authenticateClientRequestEsipa", {
            "transactionId": auth_req.transaction_id,
            "authenticateServerResponse": asn1.decode("SGP32-AuthenticateServerResponse",
                                                      auth_req.authenticate_server_response)})))
        ch = _raw_children(r.content)
        auth = es9p.AuthenticateClientResponse(transaction_id=ch[0].value, profile_metadata=ch[1].raw,
                                               smdp_signed2=ch[2].raw, smdp_signature2=ch[3].raw,
                                               smdp_certificate=ch[4].raw)
        bpp_req = euicc.prepare_download(auth)
        r = post(http, asn1.encode(FROM_IPA, ("getBoundProfilePackageRequestEsipa", {
            "transactionId": bpp_req.transaction_id,
            "prepareDownloadResponse": asn1.decode("SGP32-PrepareDownloadResponse",
                                                   bpp_req.prepare_download_response)})))
        ch = _raw_children(r.content)
        assert euicc.open_bpp(ch[1].raw, init.transaction_id)[1] == PACKAGE
        # unknown transaction -> invalidTransactionId (95)
        _, bad = esipa(http, ("getBoundProfilePackageRequestEsipa", {
            "transactionId": b"\x01" * 16,
            "prepareDownloadResponse": asn1.decode("SGP32-PrepareDownloadResponse", bpp_req.prepare_download_response)}))
        assert bad[1] == ("getBoundProfilePackageErrorEsipa", 95)
        pir = euicc.installation_result(init.transaction_id, ICCID)
        inner = b"\xa0" + _len(pir) + pir
        r = post(http, b"\xbf\x3d" + _len(inner) + inner)
        assert r.status_code == 204
        assert dp.store.profile_state(ICCID) == ProfileState.INSTALLED  # forwarded over ES9+
        done = eim.service.wait_order(order.id, 5)
        assert done.status == "done" and done.result["profileInstallationResult"] == "ok"
        assert done.result["iccid"] == ICCID
        assert any(e.kind == "relay" for e in eim.service.events(euicc.eid))


def _len(b: bytes) -> bytes:
    n = len(b)
    return bytes([n]) if n < 0x80 else (bytes([0x81, n]) if n < 0x100 else bytes([0x82]) + n.to_bytes(2, "big"))
