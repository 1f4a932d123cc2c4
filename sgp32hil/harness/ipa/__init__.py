"""Host-side IPA procedures: ES9+ client and the direct profile download (SGP.32 v1.2 §3.2.3.1,
SGP.22 v2.5 §3.1.3), notification delivery (SGP.22 §3.5)."""

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

__all__ = [
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
