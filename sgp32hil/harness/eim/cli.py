"""``sgp32-hil eim ...`` (serve, order). Imports stay lazy so ``--help`` is instant."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``eim`` command group to the top-level subparsers."""
    eim = sub.add_parser("eim", help="the bundled eIM (SGP.32 ESipa, eUICC packages, operator API)")
    eim.add_subparsers(dest="eim_command", metavar="ACTION", required=True)
