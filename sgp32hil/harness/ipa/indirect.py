"""Indirect profile download (SGP.32 v1.2 §3.2.3.2): the download procedure's ES9+ calls carried over
ESipa to the eIM, which relays them to the SM-DP+ (ES9+').

:class:`EsipaRelay` has the interface :func:`~sgp32hil.harness.ipa.download.download_profile` uses from
:class:`~sgp32hil.harness.es9p_client.Es9Client` (``initiate_authentication``, ``authenticate_client``,
``get_bound_profile_package``, ``cancel_session``, ``handle_notification``, ``address``, ``exchanges``),
speaking BF39 / BF3B / BF3A / BF41 / BF3D.  The eimTransactionId of the triggering
ProfileDownloadTriggerRequest travels in InitiateAuthenticationRequestEsipa (§5.14.1).  Every
notification of the procedure goes to the eIM (HandleNotificationEsipa), whatever its
notificationAddress: in the indirect mode the IPA talks to no SM-DP+ itself.
"""

from __future__ import annotations

from .esipa_client import AuthenticateClientOk, BoundProfilePackageOk, EsipaClient, InitiateAuthenticationOk

__all__ = ["EsipaRelay"]


class EsipaRelay:
    """ES9+-shaped adapter over an :class:`EsipaClient` (one per download; the client is not closed here)."""

    relays_all_addresses = True

    def __init__(self, esipa: EsipaClient, *, eim_transaction_id: bytes | None = None, smdp_address: str | None = None):
        self.esipa = esipa
        self.eim_transaction_id = eim_transaction_id
        self.address = smdp_address or esipa.base_url
        self._start = len(esipa.exchanges)

    @property
    def exchanges(self) -> list:
        """The ESipa exchanges of this download (for DownloadResult.es9_exchanges)."""
        return self.esipa.exchanges[self._start:]

    def initiate_authentication(self, euicc_challenge: bytes, euicc_info1: bytes,
                                smdp_address: str | None = None) -> InitiateAuthenticationOk:
        return self.esipa.initiate_authentication(euicc_challenge, euicc_info1, smdp_address or self.address,
                                                  self.eim_transaction_id)

    def authenticate_client(self, transaction_id: bytes, authenticate_server_response: bytes) -> AuthenticateClientOk:
        return self.esipa.authenticate_client(transaction_id, authenticate_server_response)

    def get_bound_profile_package(self, transaction_id: bytes, prepare_download_response: bytes) -> BoundProfilePackageOk:
        return self.esipa.get_bound_profile_package(transaction_id, prepare_download_response)

    def cancel_session(self, transaction_id: bytes, cancel_session_response: bytes) -> None:
        self.esipa.cancel_session(transaction_id, cancel_session_response)

    def handle_notification(self, pending_notification: bytes) -> None:
        self.esipa.handle_notification(pending_notification)

    def close(self) -> None:
        """Nothing to close: the ESipa client belongs to the poll."""
