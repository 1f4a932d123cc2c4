"""``sgp32-hil`` command line.

Every command imports what it needs lazily so ``--help`` is instant and a missing optional dependency
only affects the command that needs it. Errors the user can fix (bad flag, missing reader, bad file)
print one line naming the input and exit 2; infrastructure failures exit 3; test failures exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INFRA = 3


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


# --- readers -------------------------------------------------------------------------------------


def cmd_readers(args) -> int:
    from ..drivers.apdu.pcsc import list_readers

    readers = list_readers()
    if args.json:
        print(json.dumps([r.__dict__ for r in readers], indent=2, default=str))
        return 0
    if not readers:
        print("no PC/SC readers (is pcscd running? is the reader plugged in?)")
        return 0
    for i, r in enumerate(readers):
        card = f"card ATR {r.atr}" if r.card_present else "no card"
        print(f"{i}: {r.name}  [{card}]")
    return 0


# --- euicc -----------------------------------------------------------------------------------------


def cmd_euicc_info(args) -> int:
    from ..drivers.apdu.pcsc import PcscTransport
    from ..drivers.es10.client import Es10Client, Es10Error
    from ..drivers.es10.info import collect_info, format_info

    reader = int(args.reader) if args.reader.isdigit() else args.reader
    try:
        with PcscTransport(reader) as transport, Es10Client(transport) as client:
            info = collect_info(client)
    except Es10Error as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


# --- profile ---------------------------------------------------------------------------------------


def cmd_profile_make(args) -> int:
    import re

    from . import saip

    try:
        der = saip.make_profile(args.iccid, args.imsi, apn=args.apn, name=args.name, spn=args.spn,
                                key=args.key, opc=args.opc, mnc_len=args.mnc_len, pad_to=args.pad_to)
    except (saip.ProfileError, ValueError) as exc:
        raise CliError(str(exc)) from None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", args.name).strip("-") or args.iccid
    out = Path(args.out) if args.out else Path("fixtures/profiles") / f"{slug}.der"
    if out.exists() and not args.force:
        raise CliError(f"--out {out}: file exists (use --force to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(der)
    s = saip.read_profile(der)
    print(f"{out}: {s.size} bytes, ICCID {s.iccid}, IMSI {s.imsi}, APN {s.apn or '-'}, PEs {' '.join(s.pe_types)}")
    return 0


def cmd_profile_download(args) -> int:
    from ..drivers.apdu.pcsc import PcscTransport
    from ..drivers.es10.client import Es10Client
    from .activation import ActivationCodeError
    from .activation import parse as parse_activation_code
    from .ipa import download_profile

    try:
        ac = parse_activation_code(args.activation_code)
    except ActivationCodeError as exc:
        raise CliError(str(exc)) from None
    if ac.cc_required and args.confirmation_code is None:
        raise CliError(f"activation code {ac}: a confirmation code is required; give --confirmation-code")
    reader = int(args.reader) if args.reader.isdigit() else args.reader

    def show(event) -> None:
        status = "ok" if event.status == "ok" else "FAILED"
        print(f"{event.phase:<24} {status:<6} {event.seconds * 1000:9.1f} ms  {event.detail}", flush=True)

    try:
        with PcscTransport(reader) as transport, Es10Client(transport) as client:
            result = download_profile(client, ac, confirmation_code=args.confirmation_code, ca=args.ca,
                                      insecure=args.insecure, pki_dir=args.pki, timeout=args.timeout,
                                      progress=None if args.json else show)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.success:
        note = result.notification
        delivered = "delivered and removed" if note and note.removed else f"NOT delivered: {note.error if note else '-'}"
        print(f"installed ICCID {result.iccid} (ISD-P {result.isdp_aid}, disabled) in {result.total_seconds:.2f} s, "
              f"{result.apdu_count} APDUs; install notification {delivered}")
    else:
        err, c = result.error, result.cancel
        cancel = ""
        if c is not None:
            problem = c.es10_error or c.es9_error
            cancel = f"; cancel session: {problem}" if problem else f"; session cancelled ({c.reason})"
        print(f"sgp32-hil: download failed in {err.phase}: {err.message}{cancel}", file=sys.stderr)
    return 0 if result.success else 1


# --- smdp ------------------------------------------------------------------------------------------


def cmd_smdp_serve(args) -> int:
    from .smdp.server import default_address, serve

    address = args.address or default_address(args.host, args.port)
    print(f"SM-DP+ {address}: ES9+ on https://{args.host}:{args.port}/gsma/rsp2/es9plus/"
          + (f", ES2+ (mutual TLS) on port {args.es2_port}" if args.es2_port else "") + f", state {args.db}; "
          f"activation codes: LPA:1${address}$<MatchingID>")
    serve(args.host, args.port, args.pki, args.db, es2_port=args.es2_port, preload=args.preload, address=address)
    return 0


# --- pki -------------------------------------------------------------------------------------------


def cmd_pki_generate(args) -> int:
    from . import pki

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise CliError(f"--out {out}: folder is not empty (use --force to overwrite)")
    pki.generate(out, smdp_host=args.smdp_host, eim_host=args.eim_host)
    print(f"test PKI written to {out}")
    return 0


# --- virtual ---------------------------------------------------------------------------------------


def cmd_virtual_euicc(args) -> int:
    from ..drivers.virtual.euicc.service import serve_vpcd
    from . import pki

    pkiset = pki.ensure(args.pki)
    return serve_vpcd(
        state_dir=Path(args.state),
        pkiset=pkiset,
        host=args.vpcd_host,
        port=args.vpcd_port,
        provision=Path(args.provision) if args.provision else None,
        eim_fqdn=args.eim_fqdn,
    )


# --- run -----------------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    """Run a plan on a bench (or one slot of a rack): start what it needs, one progress line per test, a
    summary table, reports under reports/<timestamp>/, exit 1 on any failure."""
    import fcntl
    import tempfile
    import time

    import pytest

    from . import bench as benchmod
    from .plans import PlanError, load_plan, testplans_dir

    tests = testplans_dir()
    if not tests.is_dir():
        raise CliError(f"conformance test modules not found at {tests} (run from a checkout of sgp32-hil)")
    try:
        load_plan(args.plan)
        if args.rack:
            if not args.slot:
                rack = benchmod.load_rack(args.rack)
                raise CliError(f"--rack {args.rack}: choose a slot with --slot (slots: {', '.join(rack.slots)})")
            bench = benchmod.load_rack(args.rack).slot(args.slot)
            bench_path = Path(args.rack)
        else:
            bench_path = Path(args.bench) if args.bench else benchmod.default_bench_path()
            bench = benchmod.load_bench(bench_path)
    except (PlanError, benchmod.BenchError) as exc:
        raise CliError(str(exc)) from None
    slot = args.slot or bench.name
    # One run per slot on this host at a time: the slot's modem port, reader and server ports are exclusive.
    lock_path = Path(tempfile.gettempdir()) / f"sgp32hil-slot-{slot}.lock"
    lock = open(lock_path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if args.wait else fcntl.LOCK_NB))
    except BlockingIOError:
        lock.close()
        raise CliError(f"slot {slot!r} is in use by another run on this host ({lock_path}); use --wait to queue")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.reports) / (f"{stamp}-{slot}" if args.rack else stamp)
    out.mkdir(parents=True, exist_ok=True)
    latest = Path(args.reports) / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(out.name)
    where = [f"--rack={args.rack}", f"--slot={slot}"] if args.rack else [f"--bench={bench_path}"]
    argv = [
        str(tests), "-p", "no:cacheprovider", "-p", "no:anyio", "-q", "--no-header", "-p", "no:randomly",
        *where, f"--plan={args.plan}", "--hil-progress", f"--hil-report-dir={out}",
        f"--junitxml={out / f'junit-{slot}.xml'}", "-o", f"junit_suite_name={slot}",
        f"--alluredir={out / 'allure-results'}", "--clean-alluredir",
        "--rootdir", str(tests.parent), "-c", str(tests / "pytest.ini"),
    ]
    if args.keep_state:
        argv.append("--keep-state")
    if args.sgp32_version:
        argv.append(f"--sgp32-version={args.sgp32_version}")
    argv += args.pytest_args
    print(f"sgp32-hil run: bench {bench.name} ({bench_path}), plan {args.plan}, reports in {out}", flush=True)
    started = time.monotonic()
    try:
        rc = pytest.main(argv)
    finally:
        lock.close()
    wall = time.monotonic() - started
    print(f"wall time {wall:.1f} s; reports: {out} (matrix.html, matrix.md, metrics.json, junit-{slot}.xml, "
          f"allure-results/; 'sgp32-hil report {out}' builds the Allure HTML report)")
    if rc not in (0, 1):
        print(f"sgp32-hil run: pytest ended with exit status {rc} (usage error, interrupted or no tests)", file=sys.stderr)
    return 0 if rc == 0 else 1


def cmd_report(args) -> int:
    """Build the Allure HTML report of a run folder with the ``allure`` command (npm package ``allure``)."""
    import shutil
    import subprocess

    base = Path(args.dir)
    if not base.exists():
        raise CliError(f"{base}: no such run folder (sgp32-hil run writes reports/<timestamp>/)")
    results = base / "allure-results" if (base / "allure-results").is_dir() else base
    if not any(results.glob("*-result.json")):
        raise CliError(f"{results}: no Allure results (*-result.json) here; give a folder written by sgp32-hil run")
    out = Path(args.out) if args.out else results.parent / "allure-report"
    for matrix in ("matrix.html", "matrix.md"):
        if (results.parent / matrix).is_file():
            print(f"conformance matrix: {results.parent / matrix}")
    allure = shutil.which("allure")
    if allure is None:
        print("the Allure command line is not installed: install it with 'npm install -g allure' (Allure 3) "
              "or see https://allurereport.org/docs/install/; then run: "
              f"allure generate {results} -o {out}", file=sys.stderr)
        return EXIT_USAGE
    history = out / "history"
    if history.is_dir():  # Allure 2 trends: the previous report's history goes into the results
        shutil.copytree(history, results / "history", dirs_exist_ok=True)
    cmd = [allure, "generate", str(results), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "--clean" not in cmd:
        cmd.insert(2, "--clean")
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"sgp32-hil: {' '.join(cmd)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}",
              file=sys.stderr)
        return 1
    print(f"Allure report: {out / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sgp32-hil",
        description="Hardware-in-the-loop test and conformance harness for GSMA SGP.32 (IoT eSIM).",
        epilog="Run 'sgp32-hil COMMAND --help' for the options of a command.",
    )
    p.add_argument("--log-level", default=os.environ.get("SGP32HIL_LOG", "warning"),
                   choices=["debug", "info", "warning", "error"],
                   help="diagnostic messages on stderr (default: warning, or $SGP32HIL_LOG)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sp = sub.add_parser(
        "run",
        help="run a conformance plan on a bench (default: the embedded virtual bench) and write reports",
        description="Starts what the bench needs (pcscd, the software eUICC, ...), runs the plan's tests with one "
        "progress line each, prints a summary table and writes reports/<timestamp>/: Allure results, JUnit, "
        "metrics.json and the conformance matrix (matrix.html, matrix.md). Exit status 1 when a test fails.",
    )
    sp.add_argument("--bench", help="bench YAML file (default: fixtures/benches/virtual.yaml)")
    sp.add_argument("--plan", default="nightly", help="smoke, nightly, certification, or a plan YAML file (default: nightly)")
    sp.add_argument("--rack", help="rack YAML file listing benches (with --slot: run on that slot)")
    sp.add_argument("--slot", help="slot of the rack; also names the JUnit file (default: the bench name)")
    sp.add_argument("--wait", action="store_true", help="wait for the slot when another run on this host holds it")
    sp.add_argument("--reports", default="reports", help="reports folder (default: ./reports)")
    sp.add_argument("--sgp32-version", choices=["1.0", "1.2"], help="override the bench's SGP.32 version")
    sp.add_argument("--keep-state", action="store_true", help="keep the virtual eUICC's state between runs")
    sp.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="extra pytest arguments (after --)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser(
        "report",
        help="build the Allure HTML report of a run (needs the 'allure' command, npm package allure)",
        description="Turns reports/<timestamp>/allure-results into an HTML report with 'allure generate'. The "
        "conformance matrix (matrix.html, matrix.md) is written by every run and needs nothing extra.",
    )
    sp.add_argument("dir", nargs="?", default="reports/latest", help="run folder (default: reports/latest)")
    sp.add_argument("--out", help="report folder (default: <run folder>/allure-report)")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("readers", help="list PC/SC readers and the cards in them")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_readers)

    euicc = sub.add_parser("euicc", help="talk to an eUICC (real or software) through PC/SC")
    esub = euicc.add_subparsers(dest="euicc_command", metavar="ACTION", required=True)
    sp = esub.add_parser(
        "info",
        help="EID, EUICCInfo2 summary, profiles and eIM configuration",
        description="Reads the eUICC exactly as an IPAd does: ES10c GetEID, ES10b GetEUICCInfo2, "
        "ES10c GetProfilesInfo, ES10b GetEimConfigurationData (SGP.32).",
    )
    sp.add_argument("--reader", default="0", help="reader index or (part of its) name (default: 0)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_euicc_info)

    profile = sub.add_parser("profile", help="TCA eUICC profile packages (unprotected SAIP DER)")
    prsub = profile.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    sp = prsub.add_parser("make", help="build a USIM test profile package (TCA eUICC Profile Package v2.3.1, DER)")
    sp.add_argument("--iccid", required=True, help="19/20-digit ICCID with Luhn check digit")
    sp.add_argument("--imsi", required=True, help="IMSI, 6..15 digits (decides which simulated network accepts it)")
    sp.add_argument("--apn", help="APN, written to EF-ACL of the opt-USIM")
    sp.add_argument("--name", default="sgp32-hil test profile", help="profile name (ProfileHeader.profileType)")
    sp.add_argument("--spn", default="sgp32-hil", help="service provider name for EF-SPN (max 16 characters)")
    sp.add_argument("--key", help="Milenage K, 32 hex digits (default: random)")
    sp.add_argument("--opc", help="Milenage OPc, 32 hex digits (default: random)")
    sp.add_argument("--mnc-len", type=int, choices=(2, 3), default=2, help="MNC length for EF-AD (default: 2)")
    sp.add_argument("--pad-to", type=int, metavar="BYTES", help="pad the package to at least BYTES (e.g. 10000)")
    sp.add_argument("--out", help="output file (default: fixtures/profiles/NAME.der)")
    sp.add_argument("--force", action="store_true", help="overwrite an existing file")
    sp.set_defaults(func=cmd_profile_make)
    sp = prsub.add_parser(
        "download",
        help="download and install a profile from an activation code (direct download, SGP.32 §3.2.3.1)",
        description="Direct profile download as an IPAd/LPA does it (SGP.22 §3.1.3): ES10b on the eUICC in READER, "
        "ES9+ with the SM-DP+ of the activation code. One line per phase; exit 1 on failure.",
    )
    sp.add_argument("--reader", default="0", help="reader index or (part of its) name (default: 0)")
    sp.add_argument("--activation-code", required=True, metavar="AC",
                    help="'LPA:1$<SM-DP+ address>$<MatchingID>[$<SM-DP+ OID>[$1]]' (SGP.22 §4.1; quote it)")
    sp.add_argument("--confirmation-code", metavar="CC", help="confirmation code, when the SM-DP+ requires one")
    tls = sp.add_mutually_exclusive_group()
    tls.add_argument("--ca", metavar="FILE",
                     help="PEM CA bundle to verify the SM-DP+ TLS certificate (default: the PKI's tls/ca-bundle.pem)")
    tls.add_argument("--insecure", action="store_true",
                     help="do not verify the SM-DP+ TLS certificate (as many LPAs; the eUICC still verifies the SM-DP+)")
    sp.add_argument("--pki", help="PKI folder for the default CA bundle (default: $SGP32HIL_HOME/pki)")
    sp.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                    help="ES9+ HTTP time-out per request (default: 30)")
    sp.add_argument("--json", action="store_true", help="print the full result (timings, ES9+ and ES10 traces) as JSON")
    sp.set_defaults(func=cmd_profile_download)

    smdp = sub.add_parser("smdp", help="the bundled SM-DP+ (SGP.22 ES9+ and ES2+)")
    smdp_sub = smdp.add_subparsers(dest="smdp_command", metavar="ACTION", required=True)
    sp = smdp_sub.add_parser(
        "serve",
        help="run the SM-DP+ over HTTPS (DPtls certificate from the PKI), state in SQLite",
        description="Serves ES9+ (JSON binding, SGP.22 v2.5 §6.5) for LPAs and IPAs, and with --es2-port the ES2+ "
        "operator interface over mutual TLS. Confirmed orders and completed downloads survive restarts.",
    )
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8443, help="ES9+ HTTPS port (default: 8443)")
    sp.add_argument("--pki", metavar="DIR", help="PKI folder (default: $SGP32HIL_HOME/pki, generated when empty)")
    sp.add_argument("--db", metavar="FILE", required=True, help="SQLite state file (created when missing)")
    sp.add_argument("--preload", metavar="YAML", help="orders to load at start: matching IDs and profiles")
    sp.add_argument("--es2-port", type=int, metavar="N", help="serve ES2+ with mutual TLS on this port")
    sp.add_argument("--address", help="SM-DP+ address that activation codes must carry (default: HOST:PORT)")
    sp.set_defaults(func=cmd_smdp_serve)

    pki = sub.add_parser("pki", help="test PKI (CI, EUM, eUICC, DPauth/DPpb/DPtls, eIM)")
    psub = pki.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    sp = psub.add_parser("generate", help="generate a complete SGP.22/SGP.32 test PKI (NIST P-256 and brainpoolP256r1)")
    sp.add_argument("--out", required=True, help="output folder (SGP.26-like layout: CERT_*.der + SK_*.pem)")
    sp.add_argument("--smdp-host", default="127.0.0.1", help="SM-DP+ host name for the DPtls certificate SAN")
    sp.add_argument("--eim-host", default="127.0.0.1", help="eIM host name for the eIM TLS certificate SAN")
    sp.add_argument("--force", action="store_true", help="write into a non-empty folder")
    sp.set_defaults(func=cmd_pki_generate)

    virtual = sub.add_parser("virtual", help="parts of the virtual bench (software eUICC, simulated modem)")
    vsub = virtual.add_subparsers(dest="virtual_command", metavar="PART", required=True)
    sp = vsub.add_parser(
        "euicc",
        help="run a software SGP.32 eUICC in a vsmartcard vpcd reader",
        description="Connects a software eUICC to pcscd's vpcd reader. A new --state folder starts in the "
        "factory state: an EID and certificates from the test PKI, one enabled bootstrap profile and an eIM "
        "configuration pointing at the bundled eIM. State survives restarts and kill -9.",
    )
    sp.add_argument("--state", required=True, help="state folder (created in the factory state when empty)")
    sp.add_argument("--vpcd-port", type=int, default=35963, help="vpcd TCP port: 35963 = reader 0, 35964 = reader 1")
    sp.add_argument("--vpcd-host", default="127.0.0.1", help="host where pcscd's vpcd listens")
    sp.add_argument("--pki", help="PKI folder (default: $SGP32HIL_HOME/pki, i.e. ~/.local/share/sgp32-hil/pki; generated when empty)")
    sp.add_argument("--provision", help="YAML file of extra profiles to pre-provision in a new state")
    sp.add_argument("--eim-fqdn", default="127.0.0.1:8444", help="eIM address of the factory eIM configuration")
    sp.set_defaults(func=cmd_virtual_euicc)

    from ..drivers.virtual.modem.service import add_arguments, main_virtual_modem

    sp = vsub.add_parser(
        "modem",
        help="run a simulated cellular module on a pty (vendor personality, network model, eUICC bridge)",
        description="Creates a pty that pyserial opens like a USB modem, at the stable symlink --link. The AT "
        "interpreter follows the vendor profile; registration follows the enabled profile's IMSI and the "
        "networks file; profile enable triggers the REFRESH sequence. Control it with --control SOCKET.",
    )
    add_arguments(sp)
    sp.set_defaults(func=main_virtual_modem)
    from .eim.cli import register as register_eim
    from .ipa.cli import register as register_ipa

    register_eim(sub)
    register_ipa(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..drivers.apdu.base import ApduError, TransportError

    try:
        return args.func(args) or 0
    except CliError as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TransportError as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return EXIT_INFRA
    except ApduError as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
