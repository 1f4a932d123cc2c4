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


def data_home() -> Path:
    """Where generated material lives by default (PKI, eUICC states): $SGP32HIL_HOME or XDG data dir."""
    if os.environ.get("SGP32HIL_HOME"):
        return Path(os.environ["SGP32HIL_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "sgp32-hil"


def default_pki_dir() -> Path:
    return data_home() / "pki"


def ensure_pki(directory: Path, quiet: bool = False):
    """Load the PKI in ``directory``, generating a fresh test PKI there first if it is empty."""
    from . import pki

    if not (directory / "pki.yaml").exists() and not any(directory.glob("**/CERT_*.der")):
        if not quiet:
            print(f"generating a test PKI in {directory}", file=sys.stderr)
        return pki.generate(directory)
    return pki.load(directory)


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

    pki_dir = Path(args.pki) if args.pki else default_pki_dir()
    pkiset = ensure_pki(pki_dir)
    return serve_vpcd(
        state_dir=Path(args.state),
        pkiset=pkiset,
        host=args.vpcd_host,
        port=args.vpcd_port,
        provision=Path(args.provision) if args.provision else None,
        eim_fqdn=args.eim_fqdn,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sgp32-hil",
        description="Hardware-in-the-loop test and conformance harness for GSMA SGP.32 (IoT eSIM).",
        epilog="Run 'sgp32-hil COMMAND --help' for the options of a command.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    sp.add_argument("--pki", help=f"PKI folder (default: {default_pki_dir()}, generated when empty)")
    sp.add_argument("--provision", help="YAML file of extra profiles to pre-provision in a new state")
    sp.add_argument("--eim-fqdn", default="127.0.0.1:8444", help="eIM address of the factory eIM configuration")
    sp.set_defaults(func=cmd_virtual_euicc)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
