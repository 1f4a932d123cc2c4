"""``sgp32-hil eim ...`` (serve, order, status, euicc, register). Imports stay lazy so ``--help`` is instant.

``order``/``status``/``euicc``/``register`` talk to a running eIM's REST API (/api/v1) over HTTPS, trusting the
PKI's TLS CA bundle (``--ca`` to override).
"""

from __future__ import annotations

import json
import sys
import time


def register(sub) -> None:
    """Add the ``eim`` command group to the top-level subparsers."""
    eim = sub.add_parser("eim", help="the bundled eIM (SGP.32 ESipa, eUICC packages, operator API)",
                         description="The bundled eIM: ESipa (POST /gsma/rsp2/asn1, DER) and the operator REST "
                         "API (/api/v1, JSON) on one HTTPS listener.")
    esub = eim.add_subparsers(dest="eim_command", metavar="ACTION", required=True)

    sp = esub.add_parser("serve", help="run the eIM until SIGINT/SIGTERM",
                         description="Serve ESipa and the operator API over HTTPS with the PKI's eIM TLS "
                         "certificate. State (orders, counters, results) lives in the SQLite --db and survives "
                         "restarts. Prints one line when listening.")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8444, help="port (default 8444, the factory eimFqdn; 0 = any)")
    sp.add_argument("--pki", default=None, help="PKI directory (default: the user's generated test PKI)")
    sp.add_argument("--db", required=True, help="SQLite state file (created when missing)")
    sp.add_argument("--eim-id", default="sgp32hil-eim", help="eimId in packages (must match the eUICC's eIM config)")
    sp.add_argument("--policy", help="profile selection policy YAML (see fixtures/eim/policy.yaml)")
    sp.add_argument("--accept-unknown-eids", action="store_true",
                    help="register an unknown but valid EID on its first GetEimPackage instead of eidNotFound")
    sp.add_argument("--smdp-ca", help="CA bundle for the SM-DP+ TLS certificate (indirect download relay); "
                    "default: the PKI trust bundle")
    sp.set_defaults(func=cmd_serve)

    def client_args(p) -> None:
        p.add_argument("--eim", default="https://127.0.0.1:8444", help="eIM base URL (default %(default)s)")
        p.add_argument("--pki", default=None, help="PKI directory whose TLS CA bundle is trusted")
        p.add_argument("--ca", default=None, help="CA bundle file (overrides --pki)")
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")

    sp = esub.add_parser("order", help="queue an order (PSMO, eCO, download, eUICC data) for an eUICC",
                         description="Queue one order; the eUICC gets it on its next GetEimPackage. Prints the "
                         "order id; follow it with 'sgp32-hil eim status ID --wait 60'.")
    client_args(sp)
    sp.add_argument("--eid", required=True, help="EID (32 digits)")
    sp.add_argument("--wait", type=float, default=0, help="wait up to S seconds for the outcome")
    osub = sp.add_subparsers(dest="order_kind", metavar="OPERATION", required=True)
    p = osub.add_parser("enable", help="PSMO enable (optionally with rollbackFlag)")
    p.add_argument("--iccid", required=True)
    p.add_argument("--rollback", action="store_true", help="set rollbackFlag (the eUICC may roll back)")
    for name, text in (("disable", "PSMO disable"), ("delete", "PSMO delete"),
                       ("fallback-set", "PSMO setFallbackAttribute")):
        osub.add_parser(name, help=text).add_argument("--iccid", required=True)
    osub.add_parser("fallback-unset", help="PSMO unsetFallbackAttribute")
    osub.add_parser("list-profiles", help="PSMO listProfileInfo")
    osub.add_parser("get-rat", help="PSMO getRAT")
    p = osub.add_parser("default-dp", help="PSMO setDefaultDpAddress")
    p.add_argument("--address", required=True)
    p = osub.add_parser("download", help="profile download trigger with an activation code")
    p.add_argument("--activation-code", required=True, help="LPA:1$<SM-DP+ address>$<MatchingID>")
    p.add_argument("--indirect", action="store_true", help="the IPA must download through the eIM relay")
    p = osub.add_parser("add-eim", help="eCO addEim")
    p.add_argument("--eim-id", required=True)
    p.add_argument("--fqdn")
    p.add_argument("--public-key", help="PEM file with the new eIM's public key (or certificate)")
    p.add_argument("--counter", type=int, default=0, help="initial counterValue")
    p.add_argument("--association-token", action="store_true", help="ask the eUICC for an association token")
    osub.add_parser("delete-eim", help="eCO deleteEim").add_argument("--eim-id", required=True)
    osub.add_parser("list-eim", help="eCO listEim")
    osub.add_parser("euicc-data", help="IpaEuiccDataRequest").add_argument(
        "--tags", default="A0,81,BF20,BF22,A5,A6",
        help="comma-separated IpaEuiccData tags (SGP.32 §2.11.2.2: A0 notifications, 81 default SM-DP+, A2 package "
        "results, BF20/BF22 EUICCInfo1/2, 83 root SM-DS, 84 association token, A5/A6 EUM/eUICC certificates, "
        "A8 IPA capabilities, A9 device info; default %(default)s)")
    sp.set_defaults(func=cmd_order)

    sp = esub.add_parser("status", help="show an order (and wait for its outcome)")
    client_args(sp)
    sp.add_argument("order_id", metavar="ORDER_ID", type=int)
    sp.add_argument("--wait", type=float, default=0, help="wait up to S seconds for done/failed/cancelled")
    sp.set_defaults(func=cmd_status)

    sp = esub.add_parser("euicc", help="show what the eIM knows of an eUICC: state, notifications, events",
                         description="Counter value, contacts and polls, last rPLMN and state change cause, the "
                                     "notifications received (and whether they reached their SM-DP+), and the "
                                     "event history, newest last.")
    client_args(sp)
    sp.add_argument("eid", metavar="EID", help="EID (32 digits)")
    sp.add_argument("--events", type=int, default=20, metavar="N", help="show the last N events (default 20)")
    sp.set_defaults(func=cmd_euicc)

    sp = esub.add_parser("register", help="register an eUICC with the eIM",
                         description="Make an EID known to the eIM (otherwise GetEimPackage answers eidNotFound).")
    client_args(sp)
    sp.add_argument("--eid", required=True)
    sp.add_argument("--counter", type=int, default=0, help="counterValue the eUICC holds for this eIM (default 0)")
    sp.add_argument("--association-token", type=int, default=None)
    sp.add_argument("--certificate", help="eUICC certificate file (PEM or DER) to verify results with")
    sp.add_argument("--result-policy", default="verify-if-known", choices=["verify", "verify-if-known", "accept"])
    sp.set_defaults(func=cmd_register)


def cmd_serve(args) -> int:
    from . import server
    from .policy import PolicyError

    def started(service, port):
        print(f"eIM {service.eim_id} listening on https://{args.host}:{port} (ESipa /gsma/rsp2/asn1, API /api/v1)"
              f" db={args.db}" + (f" policy={args.policy}" if args.policy else ""), flush=True)

    try:
        server.serve(args.host, args.port, args.pki, args.db, eim_id=args.eim_id, policy=args.policy,
                     accept_unknown_eids=args.accept_unknown_eids, smdp_ca=args.smdp_ca, on_started=started)
    except PolicyError as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return 2
    return 0


def _client(args):
    import ssl

    import httpx

    from ..es9p_client import default_ca_bundle

    ca = args.ca or str(default_ca_bundle(args.pki))
    return httpx.Client(base_url=args.eim.rstrip("/"), verify=ssl.create_default_context(cafile=ca), timeout=330)


def _show(args, reply) -> int:
    try:
        body = reply.json()
    except ValueError:
        print(f"sgp32-hil: HTTP {reply.status_code}: {reply.text[:200]}", file=sys.stderr)
        return 1
    if reply.status_code >= 400:
        field = f" (field {body.get('field')})" if body.get("field") else ""
        print(f"sgp32-hil: {body.get('error')}{field}", file=sys.stderr)
        return 2 if reply.status_code == 400 else 1
    if args.json or "status" not in body:
        print(json.dumps(body, indent=2))
    else:
        line = f"order {body['id']} {body['kind']} for {body['eid']}: {body['status']}"
        if body.get("counter_value") is not None:
            line += f" counter={body['counter_value']}"
        if body.get("error"):
            line += f" error={body['error']}"
        print(line)
        if body.get("result"):
            print(json.dumps(body["result"], indent=2))
    return 0 if body.get("status") != "failed" else 1


def _order_params(args) -> tuple[str, dict]:
    k = args.order_kind
    simple = {"disable": "disable", "delete": "delete", "fallback-set": "setFallbackAttribute"}
    if k == "enable":
        return "psmo", {"psmos": [{"enable": {"iccid": args.iccid, "rollback": args.rollback}}]}
    if k in simple:
        return "psmo", {"psmos": [{simple[k]: {"iccid": args.iccid}}]}
    if k in ("fallback-unset", "list-profiles", "get-rat"):
        name = {"fallback-unset": "unsetFallbackAttribute", "list-profiles": "listProfileInfo", "get-rat": "getRAT"}[k]
        return "psmo", {"psmos": [{name: {}}]}
    if k == "default-dp":
        return "psmo", {"psmos": [{"setDefaultDpAddress": {"address": args.address}}]}
    if k == "download":
        return "download", {"activation_code": args.activation_code, "indirect": args.indirect}
    if k == "add-eim":
        body: dict = {"eim_id": args.eim_id, "counter_value": args.counter}
        if args.fqdn:
            body["fqdn"] = args.fqdn
        if args.public_key:
            with open(args.public_key, encoding="ascii") as f:
                pem = f.read()
            body["certificate_pem" if "CERTIFICATE" in pem else "public_key_pem"] = pem
        if args.association_token:
            body["association_token"] = True
        return "eco", {"ecos": [{"addEim": body}]}
    if k == "delete-eim":
        return "eco", {"ecos": [{"deleteEim": {"eim_id": args.eim_id}}]}
    if k == "list-eim":
        return "eco", {"ecos": [{"listEim": {}}]}
    return "euicc_data", {"tags": [t.strip() for t in args.tags.split(",") if t.strip()]}


def cmd_order(args) -> int:
    kind, params = _order_params(args)
    with _client(args) as http:
        reply = http.post("/api/v1/orders", json={"eid": args.eid, "kind": kind, **params})
        if reply.status_code == 201 and args.wait:
            reply = http.get(f"/api/v1/orders/{reply.json()['id']}", params={"wait": args.wait})
        return _show(args, reply)


def cmd_status(args) -> int:
    with _client(args) as http:
        params = {"wait": args.wait} if args.wait else {}
        return _show(args, http.get(f"/api/v1/orders/{args.order_id}", params=params))


def cmd_euicc(args) -> int:
    with _client(args) as http:
        reply = http.get(f"/api/v1/euiccs/{args.eid}")
        if reply.status_code != 200:
            return _show(args, reply)
        record = reply.json()
        events = http.get(f"/api/v1/euiccs/{args.eid}/events").json().get("events", [])
    if args.json:
        print(json.dumps({**record, "events": events}, indent=2))
        return 0

    def when(t):
        return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"

    print(f"eUICC {record['eid']}")
    for label, key in (("counter value", "counter_value"), ("association token", "association_token"),
                       ("result policy", "result_policy"), ("polls", "polls"), ("last rPLMN", "last_rplmn"),
                       ("last state change", "last_state_change_cause"), ("failed attempts", "failed_attempts")):
        value = record.get(key)
        print(f"  {label:<18} {'-' if value is None else value}")
    print(f"  {'first/last contact':<18} {when(record.get('first_contact'))} / {when(record.get('last_contact'))}")
    print(f"  {'certificate':<18} {'known' if record.get('euicc_certificate') else 'unknown'}")
    notes = record.get("notification_list", [])
    print(f"\nNotifications ({len(notes)})")
    for n in notes:
        if n.get("forwarded_to"):
            fate = f"forwarded to {n['forwarded_to']}"
        elif n.get("forward_address"):
            fate = (f"to forward to {n['forward_address']} ({n['forward_attempts']} attempt(s)"
                    + (f", last error: {n['forward_error']}" if n.get("forward_error") else "") + ")")
        else:
            fate = "kept at the eIM"
        print(f"  seq {str(n.get('seq_number')):>4}  {n['kind']:<34} {fate}")
    shown = events[-args.events:] if args.events > 0 else []
    print(f"\nEvents (last {len(shown)} of {len(events)})")
    for e in shown:
        print(f"  {when(e['time'])}  {e['kind']:<24} {json.dumps(e['detail'], separators=(',', ':'))[:110]}")
    return 0


def cmd_register(args) -> int:
    body: dict = {"eid": args.eid, "counter_value": args.counter, "result_policy": args.result_policy}
    if args.association_token is not None:
        body["association_token"] = args.association_token
    if args.certificate:
        with open(args.certificate, "rb") as f:
            raw = f.read()
        body["euicc_certificate"] = raw.decode("ascii") if raw.startswith(b"-----") else raw.hex()
    args.json = True
    with _client(args) as http:
        return _show(args, http.post("/api/v1/euiccs", json=body))
