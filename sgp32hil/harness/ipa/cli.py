"""``sgp32-hil ipa ...`` (poll). Imports stay lazy so ``--help`` is instant."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``ipa`` command group to the top-level subparsers."""
    ipa = sub.add_parser("ipa", help="the host IPAd (SGP.32 v1.2): poll the eIM and execute its packages")
    ipa.add_subparsers(dest="ipa_command", metavar="ACTION", required=True)
