"""``sgp32-hil ipa poll``: the host IPAd polling the eIM (SGP.32 v1.2 §3.1.1.1) for the eUICC in a PC/SC
reader.  Imports stay lazy so ``--help`` is instant.

Exit codes: 0 every package succeeded, 1 a package failed (or the eIM refused), 2 usage,
3 infrastructure (eIM unreachable, reader or card gone).
"""

from __future__ import annotations

import json
import sys
import time


def register(sub) -> None:
    """Add the ``ipa`` command group to the top-level subparsers."""
    ipa = sub.add_parser("ipa", help="the host IPAd (SGP.32 v1.2): poll the eIM and execute its packages")
    actions = ipa.add_subparsers(dest="ipa_command", metavar="ACTION", required=True)
    poll = actions.add_parser(
        "poll", help="poll the eIM: deliver pending results/notifications, execute packages until none is left",
        description="One poll (or --loop) of the eIM named by the card's eIM configuration (or --eim): "
                    "GetEimPackage until noEimPackageAvailable, executing eUICC packages, eUICC data requests "
                    "and profile download triggers. Exit 0 ok, 1 a package failed, 2 usage, 3 eIM/reader unreachable.")
    poll.add_argument("--reader", required=True, help="PC/SC reader: index or (part of) its name")
    poll.add_argument("--eim", metavar="URL", help="eIM address (https://host:port or host:port); default: the "
                      "card's eimFqdn")
    poll.add_argument("--eim-id", help="which associated eIM to poll (default: the first)")
    tls = poll.add_mutually_exclusive_group()
    tls.add_argument("--pki", metavar="DIR", help="PKI folder whose TLS trust bundle verifies the eIM and SM-DP+")
    tls.add_argument("--ca", metavar="FILE", help="CA bundle (PEM) verifying the eIM and SM-DP+")
    tls.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    poll.add_argument("--loop", action="store_true", help="poll again every --interval seconds (Ctrl-C stops)")
    poll.add_argument("--interval", type=float, default=30.0, metavar="S", help="seconds between polls (--loop)")
    poll.add_argument("--count", type=int, metavar="N", help="stop after N polls (implies --loop)")
    poll.add_argument("--json", action="store_true", help="print each PollResult as JSON")
    poll.add_argument("--state-change", metavar="CAUSE",
                      help="notifyStateChange with this stateChangeCause (otherEim, fallback, emergencyProfile, "
                           "local, reset, immediateEnableProfile, deviceChange, undefined) on the first poll")
    poll.add_argument("--rplmn", metavar="MCCMNC", help="registered PLMN reported in GetEimPackage")
    poll.add_argument("--download-mode", choices=("auto", "direct", "indirect"), default="auto",
                      help="profile download: auto = indirect when the eIM configuration has "
                           "indirectProfileDownload, else direct (default auto)")
    poll.add_argument("--max-packages", type=int, default=20, metavar="N", help="packages per poll (default 20)")
    poll.add_argument("--confirmation-code", metavar="CODE",
                      help="Confirmation Code given to downloads whose SM-DP+ requires one (without it such a "
                           "download fails with profileDownloadError and the session is postponed)")
    poll.set_defaults(func=cmd_ipa_poll)


def _usage(message: str) -> int:
    print(f"sgp32-hil: {message}", file=sys.stderr)
    return 2


def cmd_ipa_poll(args) -> int:
    from ...drivers.es10.decode import asn1_names
    from .poll import Ipa, PollEvent, encode_plmn

    if args.interval <= 0:
        return _usage("--interval must be positive")
    if args.count is not None and args.count < 1:
        return _usage("--count must be at least 1")
    cause = None
    if args.state_change is not None:
        known = asn1_names().numbers("StateChangeCause")
        if args.state_change not in known.values() and not args.state_change.isdigit():
            return _usage(f"--state-change {args.state_change!r}: one of {', '.join(known.values())}")
        cause = args.state_change
    rplmn = None
    if args.rplmn is not None:
        try:
            rplmn = encode_plmn(args.rplmn)
        except ValueError as exc:
            return _usage(f"--rplmn: {exc}")
    reader = int(args.reader) if args.reader.isdigit() else args.reader

    def open_transport():
        from ...drivers.apdu.pcsc import PcscTransport

        return PcscTransport(reader)

    def show(event: PollEvent) -> None:
        status = "ok" if event.status == "ok" else "FAILED"
        took = f"{event.duration_ms:9.1f} ms" if event.duration_ms else " " * 12
        print(f"{event.stage:<9} {status:<6} {took}  {event.detail}", flush=True)

    if args.confirmation_code is not None and not args.confirmation_code.strip():
        return _usage("--confirmation-code: expected a non-empty code")
    try:
        ipa = Ipa(open_transport, eim_url=args.eim, ca=args.ca, pki_dir=args.pki, insecure=args.insecure,
                  rplmn=rplmn, download_mode=args.download_mode, eim_id=args.eim_id,
                  on_progress=None if args.json else show, confirmation_code=args.confirmation_code)
    except ValueError as exc:
        return _usage(str(exc))
    loop = args.loop or args.count is not None
    total = args.count if args.count is not None else (None if loop else 1)
    worst = 0
    done = 0
    try:
        while total is None or done < total:
            if done:
                time.sleep(args.interval)
            result = ipa.poll(notify_state_change=cause is not None and done == 0,
                              state_change_cause=cause if done == 0 else None, max_packages=args.max_packages)
            done += 1
            code = 3 if result.infrastructure else (0 if result.ok else 1)
            worst = max(worst, code)
            if args.json:
                print(json.dumps(result.to_dict(), indent=2), flush=True)
            else:
                failed = sum(1 for p in result.packages if not p.ok)
                line = (f"poll {done}: EID {result.eid or '-'} eIM {result.eim_url or '-'}: "
                        f"{len(result.packages)} package(s), {failed} failed, "
                        f"{result.notifications_delivered} notification(s) delivered, "
                        f"{result.refreshes} refresh(es), {result.duration_ms:.0f} ms")
                print(line, flush=True)
                if result.error:
                    print(f"sgp32-hil: {result.error}", file=sys.stderr, flush=True)
            if code == 3 and not loop:
                break
    except KeyboardInterrupt:
        pass
    return worst
