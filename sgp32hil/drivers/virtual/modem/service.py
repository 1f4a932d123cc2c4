"""The simulated cellular module: pty + AT interpreter + state machine + eUICC backend + control API.

``SimulatedModem`` is also the Python control API (the Unix-socket control server calls the same
methods).  :func:`main_virtual_modem` is ``sgp32-hil virtual modem``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ...at.profiles import VendorProfile, load_profile
from ..card import Card
from .backend import READ_ONLY_ES10, Es10Subscriber, SoftEuiccSubscriber, SubscriberSource, UiccBackend
from .control import ControlServer
from .interpreter import AtInterpreter
from .machine import Faults, ModemMachine, Scheduler, Timing
from .network import NetworkModel, load_networks
from .pty import PtyPort

log = logging.getLogger(__name__)

DEFAULT_NETWORKS = Path(__file__).resolve().parents[4] / "fixtures" / "networks" / "default.yaml"


def with_apdu_quirks(profile: VendorProfile, **quirks: Any) -> VendorProfile:
    """``profile`` with ``apdu`` fields replaced (e.g. ``session_id="bare"``, ``test_command=False``)."""
    if not quirks:
        return profile
    return dataclasses.replace(profile, apdu=dataclasses.replace(profile.apdu, **quirks))


class SharedCard:
    """One card reached from two terminals: the MT (``owner``) and a PC/SC reader (``guest``).

    The virtual bench puts the software eUICC in the simulated modem *and* in a vpcd reader, so the host
    IPAd reaches it through pcscd as in a lab with a USB reader while the MT still sees the REFRESH after a
    switch.  APDUs are serialised with one lock (each is atomic, as on a single card contact).  The MT
    owns power: CFUN and REFRESH power-cycle or reset the card (every logical channel closes, ETSI TS
    102 221 §6.2); the reader's power off and reset are ignored so pcscd's housekeeping never pulls the
    card from under the MT, and its power on only powers a card the MT left off.
    """

    def __init__(self, card: Card):
        self.card = card
        self.lock = threading.RLock()
        self.owner = _Terminal(self, owns_power=True)
        self.guest = _Terminal(self, owns_power=False)
        self.after_apdu: list[Any] = []


class _Terminal:
    """One terminal's view of a :class:`SharedCard` (implements :class:`~..card.Card`)."""

    def __init__(self, shared: SharedCard, owns_power: bool):
        self.shared = shared
        self.owns_power = owns_power

    @property
    def atr(self) -> bytes:
        return self.shared.card.atr

    def power_on(self) -> None:
        with self.shared.lock:
            if self.owns_power or not getattr(self.shared.card, "powered", True):
                self.shared.card.power_on()

    def power_off(self) -> None:
        if self.owns_power:
            with self.shared.lock:
                self.shared.card.power_off()

    def reset(self) -> None:
        if self.owns_power:
            with self.shared.lock:
                self.shared.card.reset()

    def process_apdu(self, capdu: bytes) -> bytes:
        with self.shared.lock:
            rapdu = self.shared.card.process_apdu(capdu)
            for hook in list(self.shared.after_apdu):
                hook(bytes(rapdu))
            return rapdu


class SimulatedModem:
    """A vendor personality on a pty at ``link``, backed by ``card`` and ``networks``.

    ``subscriber`` answers which profile is enabled (default: ES10 GetProfilesInfo on ``card`` mapped through
    the network file).  ``euicc`` (a :class:`~..euicc.service.SoftEuicc`) subscribes to its REFRESH listeners;
    without it an ICCID change after a state-changing STORE DATA triggers the REFRESH.
    """

    def __init__(
        self,
        profile: VendorProfile | str,
        card: Card | None,
        networks: NetworkModel,
        link: str | os.PathLike,
        *,
        subscriber: SubscriberSource | None = None,
        euicc: Any = None,
        timing: Timing | None = None,
        max_channels: int = 3,
        refresh_reenumerates: bool | None = None,
        control: str | os.PathLike | None = None,
        scheduler: Scheduler | None = None,
    ):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.networks = networks
        self.timing = timing or Timing()
        self.link = os.fspath(link)
        self.backend = UiccBackend(card, max_channels=max_channels) if card is not None else None
        self.euicc = euicc
        if subscriber is None and euicc is not None:
            subscriber = SoftEuiccSubscriber(euicc)
        if subscriber is None and self.backend is not None:
            subscriber = Es10Subscriber(self.backend, networks)
        self.scheduler = scheduler or Scheduler()
        self.port = PtyPort(self.link, self._on_data)
        self.machine = ModemMachine(self.profile, networks, self.backend, subscriber, self.scheduler, self.emit,
                                    self.timing)
        self._stop = threading.Event()
        self.interpreter = AtInterpreter(self.profile, self.machine, self.backend, self.port.write,
                                         reset_hook=self._reset_requested, stop=self._stop)
        self.refresh_reenumerates = (self.profile.sim_ready.refresh_reenumerates if refresh_reenumerates is None
                                     else refresh_reenumerates)
        self.machine.on_refresh.append(self._after_refresh)
        self._control_path = os.fspath(control) if control else None
        self._control: ControlServer | None = None
        self._in_lock = threading.Lock()
        self.refresh_after_response = False
        self._refresh_due = False
        self.shutdown_requested = threading.Event()
        self._started = False
        if euicc is not None:
            euicc.isdr.refresh_listeners.append(self._on_euicc_refresh)
        elif self.backend is not None:
            self.backend.store_data_listeners.append(self._on_store_data)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "SimulatedModem":
        self.scheduler.start()
        self.port.create()
        self.machine.boot()
        if self._control_path:
            self._control = ControlServer(self._control_path, self).start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop the clock, the control server and the port (threads joined); the card is left to its owner."""
        self._stop.set()
        if self._control is not None:
            self._control.stop()
            self._control = None
        self.scheduler.stop()
        self.port.close()
        if self.euicc is not None and self._on_euicc_refresh in self.euicc.isdr.refresh_listeners:
            self.euicc.isdr.refresh_listeners.remove(self._on_euicc_refresh)
        self._started = False

    def __enter__(self) -> "SimulatedModem":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ I/O

    def _on_data(self, data: bytes) -> None:
        with self._in_lock:
            self.interpreter.feed(data)

    def emit(self, line: str) -> None:
        """Send one unsolicited result code (V.250 §5.7.1 framing)."""
        self.port.write(b"\r\n" + line.encode("ascii", "replace") + b"\r\n")

    # ------------------------------------------------------------------ REFRESH and resets

    def _on_euicc_refresh(self, request) -> None:
        log.info("eUICC REFRESH (%s): enabled %s", request.reason, request.enabled_iccid)
        if self.refresh_after_response:
            self._refresh_due = True
            return
        self.scheduler.call_later(self.timing.refresh_s, self.machine.refresh, key="refresh")

    def card_answered(self, rapdu: bytes) -> None:
        """After every APDU on a :class:`SharedCard`: a REFRESH the card asked for is fetched by the MT once
        the response has been read out completely (no 61xx left), as an MT fetches the proactive command
        after the terminal's exchange (ETSI TS 102 223 §6.4.7, TS 102 221 §7.4.2.2)."""
        if self._refresh_due and not (len(rapdu) >= 2 and rapdu[-2] == 0x61):
            self._refresh_due = False
            self.scheduler.call_later(self.timing.refresh_s, self.machine.refresh, key="refresh")

    def _on_store_data(self, tag: int) -> None:
        if tag in READ_ONLY_ES10:
            return
        self.scheduler.call_later(self.timing.refresh_s, self._check_iccid_change, key="iccid-check")

    def _check_iccid_change(self) -> None:
        with self.machine.lock:
            before = self.machine.subscriber.iccid if self.machine.subscriber else None
            source = self.machine.source
            now = source.current() if source is not None else None
        if now is not None and now.iccid != before:
            log.info("enabled ICCID changed %s -> %s: REFRESH", before, now.iccid)
            self.machine.refresh()

    def _after_refresh(self) -> None:
        if self.refresh_reenumerates:
            self.reenumerate()

    def _reset_requested(self) -> None:
        self.scheduler.call_later(0.02, self._reboot, key="reboot")

    def _reboot(self) -> None:
        with self._in_lock:
            self.interpreter.reset_settings()
        if self.profile.reset.reenumerates:
            self.port.drop()
            self.scheduler.call_later(self.timing.reenumerate_gap_s, self._come_back, key="reenumerate")
        else:
            self.machine.boot()

    def _come_back(self) -> None:
        self.port.create()
        self.machine.boot()

    # ------------------------------------------------------------------ control API

    def status(self) -> dict:
        s = self.machine.status()
        s.update(link=self.link, tty=self.port.slave_name, port_up=self.port.up, port_generation=self.port.generation,
                 echo=self.interpreter.echo, cmee=self.interpreter.cmee, commands=self.interpreter.commands,
                 faults=dataclasses.asdict(self.machine.faults),
                 max_channels=self.backend.max_channels if self.backend else None)
        return s

    def euicc_info(self) -> dict:
        """The software eUICC behind the MT (in process): EID, enabled ICCID, profiles; None without one."""
        if self.euicc is None:
            return {"eid": None, "profiles": []}
        state = self.euicc.state
        enabled = state.enabled_profile()
        return {"eid": state.eid, "enabled_iccid": enabled.iccid if enabled else None,
                "profiles": [{"iccid": p.iccid, "imsi": p.imsi, "state": getattr(p, "state", None)}
                             for p in getattr(state, "profiles", [])]}

    def set_coverage(self, network: str, on: bool = True) -> dict:
        self.machine.set_coverage(network, bool(on))
        return self.status()

    def set_reject(self, network: str, cause: int | None = None) -> dict:
        self.machine.set_reject(network, cause)
        return self.status()

    def move(self, network: str) -> dict:
        self.machine.move(network)
        return self.status()

    def inject_urc(self, line: str) -> None:
        self.emit(line)

    def urc_storm(self, line: str, count: int = 100, interval_s: float = 0.001) -> None:
        """Emit ``line`` ``count`` times, ``interval_s`` apart, on the clock thread."""
        def tick(left: int) -> None:
            self.emit(line)
            if left > 1:
                self.scheduler.call_later(interval_s, lambda: tick(left - 1), key="storm")

        self.scheduler.call_later(0, lambda: tick(int(count)), key="storm")

    def fault(self, name: str, **params: Any) -> dict:
        """Inject a fault: ``hang_cgla`` (count, -1 = all), ``slow_ok`` (seconds, count), ``channel_cap``
        (channels), ``urc_in_response`` (line), ``echo`` (on), ``urc_storm`` (line, count, interval_s),
        ``clear``."""
        f = self.machine.faults
        if name == "hang_cgla":
            f.hang_cgla = int(params.get("count", 1))
        elif name == "slow_ok":
            f.slow_ok_s = float(params.get("seconds", 1.0))
            f.slow_ok_count = int(params.get("count", 1))
        elif name == "channel_cap":
            if self.backend is None:
                raise ValueError("no UICC backend")
            self.backend.max_channels = int(params.get("channels", 1))
        elif name == "urc_in_response":
            f.urc_in_response = str(params.get("line", "+CEREG: 2"))
        elif name == "echo":
            self.interpreter.echo = bool(params.get("on", True))
        elif name == "urc_storm":
            self.urc_storm(**params)
        elif name == "clear":
            self.machine.faults = Faults()
        else:
            raise ValueError(f"unknown fault {name!r}")
        return dataclasses.asdict(self.machine.faults)

    def refresh(self) -> None:
        """UICC reset as after REFRESH, without a profile change."""
        self.machine.refresh()

    def reenumerate(self) -> None:
        """Close the pty (host reads get EIO) and bring a new one up behind the same link after the gap."""
        self.port.drop()
        self.scheduler.call_later(self.timing.reenumerate_gap_s, self.port.create, key="reenumerate")

    def shutdown(self) -> None:
        self.shutdown_requested.set()


def open_soft_euicc_modem(
    state_dir: str | os.PathLike,
    pkiset,
    vendor: str | VendorProfile,
    networks: NetworkModel | str | os.PathLike,
    link: str | os.PathLike,
    *,
    provision: str | os.PathLike | None = None,
    **kwargs: Any,
) -> tuple[SimulatedModem, Any]:
    """A software eUICC (state folder) in process behind a simulated modem; returns (modem, euicc), not started."""
    from ..euicc.service import SoftEuicc

    model = networks if isinstance(networks, NetworkModel) else load_networks(networks)
    euicc = SoftEuicc.open(state_dir, pkiset, provision=provision)
    try:
        modem = SimulatedModem(vendor, euicc.card, model, link, euicc=euicc, **kwargs)
    except BaseException:
        euicc.close()
        raise
    return modem, euicc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgp32-hil virtual modem``."""
    parser.add_argument("--vendor", default="quectel-bg95", help="vendor profile (sgp32hil/drivers/at/profiles)")
    parser.add_argument("--euicc-state", metavar="DIR", help="software eUICC state folder (created when empty)")
    parser.add_argument("--pcsc-reader", metavar="READER", help="use the eUICC in this PC/SC reader instead")
    parser.add_argument("--provision", metavar="YAML", help="extra profiles for a new software eUICC state")
    parser.add_argument("--networks", default=str(DEFAULT_NETWORKS), help="network model YAML")
    parser.add_argument("--link", required=True, metavar="PATH", help="stable symlink to the modem's pty")
    parser.add_argument("--control", metavar="SOCKET", help="Unix socket for the JSON-lines control API")
    parser.add_argument("--pki", metavar="DIR", help="PKI folder (default: $SGP32HIL_HOME/pki, generated when empty)")
    parser.add_argument("--eim-fqdn", default="127.0.0.1:8444", metavar="HOST:PORT",
                        help="eIM address of a new software eUICC's factory eIM configuration")
    parser.add_argument("--vpcd-port", type=int, metavar="PORT",
                        help="also insert the software eUICC in this vpcd reader (35963 = reader 0, 35964 = reader 1)")
    parser.add_argument("--vpcd-host", default="127.0.0.1", help="host where pcscd's vpcd listens")
    parser.add_argument("--sim-init", type=float, default=Timing.sim_init_s, metavar="S", help="SIM init delay")
    parser.add_argument("--refresh-delay", type=float, default=Timing.refresh_s, metavar="S",
                        help="delay between the eUICC's REFRESH request and the MT's UICC reset (proactive FETCH)")
    parser.add_argument("--refresh-reenumerates", action="store_true", help="re-create the pty on every REFRESH")
    parser.add_argument("--quirk", action="append", default=[], metavar="KEY=VALUE",
                        help="override an apdu field of the profile, e.g. session_id=bare, test_command=false")


def _quirks(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--quirk {item!r}: expected KEY=VALUE")
        low = value.lower()
        out[key] = True if low == "true" else False if low == "false" else int(value) if value.isdigit() else value
    return out


def main_virtual_modem(args: argparse.Namespace) -> int:
    """Run the simulated modem until SIGINT/SIGTERM or a control ``shutdown``; prints one line when up."""
    try:
        profile = with_apdu_quirks(load_profile(args.vendor), **_quirks(args.quirk))
        model = load_networks(args.networks)
    except (ValueError, TypeError) as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        return 2
    timing = Timing(sim_init_s=args.sim_init, refresh_s=args.refresh_delay)
    euicc = card = bridge = None
    try:
        if args.pcsc_reader:
            from .backend import PcscCard

            card = PcscCard(int(args.pcsc_reader) if args.pcsc_reader.isdigit() else args.pcsc_reader)
            modem = SimulatedModem(profile, card, model, args.link, timing=timing, control=args.control,
                                   refresh_reenumerates=args.refresh_reenumerates or None)
        elif args.euicc_state:
            from ....harness import pki as pki_mod
            from ..euicc.service import SoftEuicc

            pkiset = pki_mod.ensure(args.pki, quiet=True)
            euicc = SoftEuicc.open(args.euicc_state, pkiset, provision=args.provision, eim_fqdn=args.eim_fqdn)
            shared = SharedCard(euicc.card)
            modem = SimulatedModem(profile, shared.owner, model, args.link, euicc=euicc, timing=timing,
                                   control=args.control, refresh_reenumerates=args.refresh_reenumerates or None)
            modem.refresh_after_response = True
            shared.after_apdu.append(modem.card_answered)
            if args.vpcd_port:
                from ..vpcd import VpcdBridge

                bridge = VpcdBridge(shared.guest, host=args.vpcd_host, port=args.vpcd_port)
        else:
            modem = SimulatedModem(profile, None, model, args.link, timing=timing, control=args.control)
    except Exception as exc:
        print(f"sgp32-hil: {exc}", file=sys.stderr)
        if euicc is not None:
            euicc.close()
        return 1
    previous = {}

    def on_signal(signum, frame):
        modem.shutdown_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        modem.start()
        if bridge is not None:
            bridge.start()
        print(f"simulated {profile.name} modem on {args.link} -> {modem.port.slave_name}"
              + (f", control {args.control}" if args.control else "")
              + (f", eUICC {euicc.eid} also in vpcd reader {args.vpcd_host}:{args.vpcd_port}" if bridge else ""),
              flush=True)
        while not modem.shutdown_requested.wait(0.5):
            pass
    finally:
        if bridge is not None:
            bridge.stop()
        modem.stop()
        if euicc is not None:
            euicc.close()
        if card is not None and hasattr(card, "close"):
            card.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgp32hil.drivers.virtual.modem")
    add_arguments(parser)
    return main_virtual_modem(parser.parse_args(argv))
