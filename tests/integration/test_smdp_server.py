"""The SM-DP+ over real HTTPS on loopback: ES9+ (server TLS) and ES2+ (mutual TLS), restart survival."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgp32hil.harness import es2p, es9p, pki
from sgp32hil.harness.smdp import ProfileState, run_in_thread
from tests.unit.test_smdp_service import ICCID, PACKAGE, EuiccRole

HEADERS = {"Content-Type": es9p.CONTENT_TYPE, "X-Admin-Protocol": "gsma/rsp/v2.2.0"}


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pki")
    pki.ensure(path, quiet=True)
    return path


@pytest.fixture(scope="module")
def pki_set(pki_dir):
    return pki.ensure(pki_dir, quiet=True)


def client(smdp, cert=None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(smdp.ca_file))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return httpx.Client(verify=ctx, timeout=10)


def es9(http, smdp, function, request) -> object:
    r = http.post(smdp.es9_url + es9p.ES9P_PATH + function, content=es9p.request_json(request), headers=HEADERS)
    if function == "handleNotification":
        assert r.status_code == 204 and r.content == b""
        return None
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return es9p.parse_response(function, r.content)


def failure(http, url, body, headers=HEADERS) -> tuple[str, str]:
    r = http.post(url, content=body, headers=headers)
    assert r.status_code == 200
    status = r.json()["header"]["functionExecutionStatus"]
    assert status["status"] == "Failed"
    return status["statusCodeData"]["subjectCode"], status["statusCodeData"]["reasonCode"]


def test_download_over_https(tmp_path, pki_dir, pki_set):
    with run_in_thread(pki_dir, tmp_path / "db.sqlite") as smdp, client(smdp) as http:
        smdp.store.add_order("MID-1", package=PACKAGE, name="Test One")
        euicc = EuiccRole(pki_set)
        init = es9(http, smdp, "initiateAuthentication", euicc.initiate_request(smdp.service.address))
        auth = es9(http, smdp, "authenticateClient", euicc.authenticate_server(init, "MID-1"))
        bpp = es9(http, smdp, "getBoundProfilePackage", euicc.prepare_download(auth))
        assert euicc.open_bpp(bpp.bound_profile_package, init.transaction_id)[1] == PACKAGE
        es9(http, smdp, "handleNotification",
            es9p.HandleNotificationRequest(euicc.installation_result(init.transaction_id, ICCID)))
        assert smdp.store.profile_state(ICCID) == ProfileState.INSTALLED


def test_es9_error_paths(tmp_path, pki_dir, pki_set):
    with run_in_thread(pki_dir, tmp_path / "db.sqlite") as smdp, client(smdp) as http:
        smdp.store.add_order("MID-1", package=PACKAGE)
        base = smdp.es9_url + es9p.ES9P_PATH
        euicc = EuiccRole(pki_set)
        good = es9p.request_json(euicc.initiate_request(smdp.service.address))
        assert failure(http, base + "initiateAuthentication", good, {**HEADERS, "Content-Type": "text/plain"}) == es9p.INVALID
        assert failure(http, base + "initiateAuthentication", good, {**HEADERS, "X-Admin-Protocol": "gsma/rsp/v3.0.0"}) == es9p.UNSUPPORTED
        assert failure(http, base + "initiateAuthentication", b"{") == es9p.INVALID
        assert failure(http, base + "initiateAuthentication",
                       es9p.request_json(euicc.initiate_request("evil.example"))) == es9p.SMDP_ADDRESS_REFUSED
        unknown = es9p.AuthenticateClientRequest(b"\x01" * 16, b"\xbf\x38\x00")
        assert failure(http, base + "authenticateClient", es9p.request_json(unknown)) == es9p.TRANSACTION_ID_UNKNOWN
        init = es9(http, smdp, "initiateAuthentication", euicc.initiate_request(smdp.service.address))
        bad = euicc.authenticate_server(init, "MID-1", tamper_signature=True)
        assert failure(http, base + "authenticateClient", es9p.request_json(bad)) == es9p.EUICC_SIGNATURE_INVALID
        init = es9(http, smdp, "initiateAuthentication", euicc.initiate_request(smdp.service.address))
        req = euicc.authenticate_server(init, "MID-1")
        es9(http, smdp, "authenticateClient", req)
        assert failure(http, base + "authenticateClient", es9p.request_json(req)) == es9p.TRANSACTION_ID_UNKNOWN
        assert http.get(base + "initiateAuthentication").status_code == 405


def test_es2_requires_client_certificate(tmp_path, pki_dir, pki_set):
    with run_in_thread(pki_dir, tmp_path / "db.sqlite", es2=True) as smdp:
        smdp.store.add_profile(ICCID, PACKAGE)
        header = es9p.RequestHeader("operator", "call-1")
        body = es2p.request_json(es2p.DownloadOrderRequest(header))
        url = smdp.es2_url + es2p.ES2P_PATH
        with client(smdp) as anonymous, pytest.raises(httpx.HTTPError):
            anonymous.post(url + "downloadOrder", content=body, headers=HEADERS)
        assert smdp.client_cert is not None
        with client(smdp, smdp.client_cert) as op:
            r = op.post(url + "downloadOrder", content=body, headers=HEADERS)
            assert es2p.parse_response("downloadOrder", r.content).iccid == ICCID
            euicc = EuiccRole(pki_set)
            confirm = es2p.ConfirmOrderRequest(header, ICCID, release_flag=True, eid=euicc.eid, matching_id="OP-1",
                                               confirmation_code="4321")
            r = op.post(url + "confirmOrder", content=es2p.request_json(confirm), headers=HEADERS)
            resp = es2p.parse_response("confirmOrder", r.content)
            assert (resp.matching_id, resp.eid, resp.smdp_address) == ("OP-1", euicc.eid, smdp.service.address)
            assert failure(op, url + "confirmOrder", es2p.request_json(confirm)) == es2p.ICCID_INVALID_STATE
            assert failure(op, url + "releaseProfile", b'{"iccid":"1"}') == es9p.MANDATORY_ELEMENT_MISSING
        assert smdp.store.order("OP-1").cc_required


def test_restart_keeps_orders_sessions_and_downloads(tmp_path, pki_dir, pki_set):
    db = tmp_path / "db.sqlite"
    euicc = EuiccRole(pki_set)
    with run_in_thread(pki_dir, db) as smdp, client(smdp) as http:
        smdp.store.add_order("MID-R", package=PACKAGE, confirmation_code="1111")
        init = es9(http, smdp, "initiateAuthentication", euicc.initiate_request(smdp.service.address))
        auth = es9(http, smdp, "authenticateClient", euicc.authenticate_server(init, "MID-R"))
    with run_in_thread(pki_dir, db) as smdp, client(smdp) as http:
        assert smdp.store.order("MID-R").cc_required
        bpp = es9(http, smdp, "getBoundProfilePackage", euicc.prepare_download(auth, "1111"))
        assert euicc.open_bpp(bpp.bound_profile_package, init.transaction_id)[1] == PACKAGE
    with run_in_thread(pki_dir, db) as smdp:
        events = [d["event"] for d in smdp.store.downloads()]
        assert events == ["authenticated", "bpp"]
        assert smdp.store.profile_state(ICCID) == ProfileState.DOWNLOADED


def test_preload_yaml(tmp_path, pki_dir, pki_set):
    (tmp_path / "upp.der").write_bytes(PACKAGE)
    (tmp_path / "orders.yaml").write_text(
        "- matching_id: FILE-1\n  profile: upp.der\n  fallback: true\n  expires: 2099-01-01T00:00:00Z\n"
        "- matching_id: MAKE-1\n  profile: {make: {iccid: '8949001234567890136', imsi: '001010123456780'}}\n"
        "  confirmation_code: '77'\n"
    )
    with run_in_thread(pki_dir, tmp_path / "db.sqlite", preload=tmp_path / "orders.yaml") as smdp:
        assert smdp.store.order("FILE-1").fallback
        assert smdp.store.order("MAKE-1").cc_required
        assert smdp.store.profile_state("8949001234567890136") == ProfileState.RELEASED


bodies = st.one_of(
    st.binary(max_size=120),
    st.dictionaries(
        st.sampled_from(["transactionId", "euiccChallenge", "euiccInfo1", "smdpAddress", "header", "iccid",
                         "authenticateServerResponse", "prepareDownloadResponse", "pendingNotification",
                         "cancelSessionResponse", "releaseFlag", "eid", "x"]),
        st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none(),
                  st.binary(max_size=40).map(lambda b: __import__("base64").b64encode(b).decode())),
        max_size=5,
    ).map(lambda d: json.dumps(d).encode()),
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, pki_dir):
    with run_in_thread(pki_dir, tmp_path_factory.mktemp("fuzz") / "db.sqlite", es2=True) as smdp:
        with client(smdp) as es9_http, client(smdp, smdp.client_cert) as es2_http:
            yield smdp, es9_http, es2_http


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.sampled_from([("es9", f) for f in es9p.FUNCTIONS] + [("es2", f) for f in es2p.FUNCTIONS]),
    body=bodies,
)
def test_fuzz_always_json_status(fuzz_server, target, body):
    smdp, es9_http, es2_http = fuzz_server
    kind, function = target
    http, url = (es9_http, smdp.es9_url + es9p.ES9P_PATH) if kind == "es9" else (es2_http, smdp.es2_url + es2p.ES2P_PATH)
    r = http.post(url + function, content=body, headers=HEADERS)
    if r.status_code == 204:
        assert function == "handleNotification" and r.content == b""
        return
    assert r.status_code == 200
    status = r.json()["header"]["functionExecutionStatus"]["status"]
    assert status in es9p.Status.ALL
    if status == "Failed":
        assert r.json()["header"]["functionExecutionStatus"]["statusCodeData"]["subjectCode"] != "1.2" or \
            r.json()["header"]["functionExecutionStatus"]["statusCodeData"]["reasonCode"] != "4.2"
