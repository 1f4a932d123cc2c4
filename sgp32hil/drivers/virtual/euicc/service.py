"""Running a software eUICC: state folder + ISD-R ES10 backend + card OS, in process or behind vpcd.

:meth:`SoftEuicc.open` locks the state folder (one card per folder), loads its state or creates the
factory state (:func:`.factory.factory_state`, plus profiles from a provisioning YAML) when the folder
has none, and wires :class:`.isdr.IsdR` into :class:`.card.EuiccCard` (card resets clear the ISD-R
session). :func:`serve_vpcd` is ``sgp32-hil virtual euicc``; :func:`in_process` is for unit tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from ....harness.pki import PkiSet
from ...apdu.inprocess import InProcessTransport
from ..vpcd import VpcdBridge
from . import provisioning
from .card import EuiccCard
from .factory import factory_state
from .isdr import IsdR
from .state import EuiccState, StateError, StateStore


class SoftEuicc:
    """One software eUICC: its locked :class:`StateStore`, the :class:`IsdR` backend and the card."""

    def __init__(self, store: StateStore, state: EuiccState, stack: contextlib.ExitStack, *, created: bool = False):
        self.store = store
        self.isdr = IsdR(state, store)
        self.card = EuiccCard(self.isdr)
        self.card.on_reset.append(self.isdr.on_card_reset)
        self.created = created
        self._stack = stack

    @classmethod
    def open(
        cls,
        state_dir: str | os.PathLike,
        pkiset: PkiSet,
        *,
        provision: str | os.PathLike | None = None,
        **factory_kwargs,
    ) -> "SoftEuicc":
        """Open (or, when the folder holds no state, create in the factory state) the eUICC in ``state_dir``.

        ``factory_kwargs`` go to :func:`factory_state` (eid, curve, eim_fqdn, eim_id, bootstrap ...) and,
        like ``provision``, only matter when the state is created.
        """
        store = StateStore(state_dir)
        stack = contextlib.ExitStack()
        stack.enter_context(store.lock())
        try:
            created = not store.exists()
            if created:
                state = factory_state(pkiset, **factory_kwargs)
                if provision is not None:
                    address = pkiset.smdp_address or "localhost"
                    extra = provisioning.load_profiles(provision, notification_address=address)
                    provisioning.apply(state, extra, str(provision))
                store.save(state)
            else:
                state = store.load()
            return cls(store, state, stack, created=created)
        except BaseException:
            stack.close()
            raise

    @property
    def state(self) -> EuiccState:
        """The current NVM (the object is replaced by every mutating ES10 function)."""
        return self.isdr.state

    @property
    def eid(self) -> str:
        return self.isdr.state.eid

    def close(self) -> None:
        """Power the card off and release the state folder."""
        self.card.power_off()
        self._stack.close()

    def __enter__(self) -> "SoftEuicc":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def in_process(state_dir: str | os.PathLike, pkiset: PkiSet, **kwargs) -> tuple[SoftEuicc, InProcessTransport]:
    """A software eUICC and a powered-on in-process APDU transport to it (unit tests)."""
    euicc = SoftEuicc.open(state_dir, pkiset, **kwargs)
    return euicc, InProcessTransport(euicc.card, name=f"in-process:euicc:{euicc.eid}")


def serve_vpcd(
    state_dir: str | os.PathLike,
    pkiset: PkiSet,
    host: str = "127.0.0.1",
    port: int = 35963,
    provision: str | os.PathLike | None = None,
    eim_fqdn: str = "127.0.0.1:8444",
) -> int:
    """Serve the eUICC of ``state_dir`` in the vpcd reader at ``host:port`` until SIGINT or SIGTERM.

    Prints one line (EID, reader, state file) once running; returns the process exit code.
    """
    try:
        euicc = SoftEuicc.open(state_dir, pkiset, provision=provision, eim_fqdn=eim_fqdn)
    except (StateError, provisioning.ProvisioningError, ValueError) as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    bridge = VpcdBridge(euicc.card, host=host, port=port)
    try:
        bridge.start()
        origin = "new factory state" if euicc.created else "existing state"
        if not euicc.created and provision is not None:
            print(f"sgp32-hil: {Path(state_dir)} already holds a state; --provision ignored", file=sys.stderr)
        print(f"software eUICC EID {euicc.eid} in vpcd reader {host}:{port} ({origin} {euicc.store.path})",
              flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        bridge.stop()
        euicc.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
