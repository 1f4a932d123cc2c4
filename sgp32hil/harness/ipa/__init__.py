"""The host IPAd (SGP.32 v1.2): ESipa client (§5.14, §6.1 ASN.1 binding), the poll cycle (§3.1.1.1) with
eUICC packages, IpaEuiccData and profile download triggers, direct (§3.2.3.1, over ES9+) and indirect
(§3.2.3.2, over the eIM) profile download, notification delivery (SGP.22 §3.5, SGP.32 §3.6)."""

from ..es9p_client import Es9Client, Es9Error, Es9Exchange, Es9TransportError, default_ca_bundle, render_exchanges
from .download import (
    PHASES,
    CancelOutcome,
    DownloadError,
    DownloadResult,
    NotificationOutcome,
    ProgressEvent,
    deliver_pending_notifications,
    download_profile,
)
from .esipa_client import (
    EimPackage,
    EimPackageResultAck,
    EsipaClient,
    EsipaError,
    EsipaExchange,
    render_esipa,
)
from .indirect import EsipaRelay
from .poll import DOWNLOAD_MODES, Ipa, PackageOutcome, PollEvent, PollResult

__all__ = [
    "DOWNLOAD_MODES",
    "EimPackage",
    "EimPackageResultAck",
    "EsipaClient",
    "EsipaError",
    "EsipaExchange",
    "EsipaRelay",
    "Ipa",
    "PackageOutcome",
    "PollEvent",
    "PollResult",
    "render_esipa",
    "PHASES",
    "CancelOutcome",
    "DownloadError",
    "DownloadResult",
    "Es9Client",
    "Es9Error",
    "Es9Exchange",
    "Es9TransportError",
    "NotificationOutcome",
    "ProgressEvent",
    "default_ca_bundle",
    "deliver_pending_notifications",
    "download_profile",
    "render_exchanges",
]
