"""State machine of the simulated modem: CFUN × UICC × EPS registration × PDN, driven by a clock.

CFUN (27.007 §8.2) 0 minimum / 1 full / 4 flight; UICC absent, off, not ready, ready (the +CPIN
states of §8.3); EPS registration <stat> of §10.1.22 (+CEREG) 0 idle, 1 home, 2 searching, 3 denied,
4 unknown, 5 roaming; default EPS bearer and PDN contexts of §10.1.1/§10.1.10/§10.1.14.  Timed
transitions (SIM initialisation, attach, search give-up, REFRESH) run on a :class:`Scheduler`, either a
clock thread or a manual clock that unit tests advance.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ...at.profiles import VendorProfile
from .backend import Subscriber, SubscriberSource, UiccBackend
from .network import Network, NetworkModel

log = logging.getLogger(__name__)


class Scheduler:
    """Timed callbacks keyed by name (scheduling a key again replaces it).

    ``manual=True`` gives a virtual clock moved by :meth:`advance`; otherwise :meth:`start` runs a thread.
    Callbacks run one at a time; an exception is logged and never stops the clock.
    """

    def __init__(self, *, manual: bool = False):
        self.manual = manual
        self._virtual = 0.0
        self._heap: list[tuple[float, int, str | None]] = []
        self._jobs: dict[int, Callable[[], None]] = {}
        self._keys: dict[str, int] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    def now(self) -> float:
        return self._virtual if self.manual else time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], None], key: str | None = None) -> None:
        with self._cond:
            if key is not None:
                self._cancel_locked(key)
            seq = next(self._seq)
            self._jobs[seq] = fn
            if key is not None:
                self._keys[key] = seq
            heapq.heappush(self._heap, (self.now() + max(0.0, delay), seq, key))
            self._cond.notify_all()

    def cancel(self, key: str) -> None:
        with self._cond:
            self._cancel_locked(key)

    def _cancel_locked(self, key: str) -> None:
        seq = self._keys.pop(key, None)
        if seq is not None:
            self._jobs.pop(seq, None)

    def pending(self, key: str) -> bool:
        with self._cond:
            return key in self._keys

    def _pop_due(self) -> Callable[[], None] | None:
        with self._cond:
            while self._heap and self._heap[0][1] not in self._jobs:
                heapq.heappop(self._heap)
            if not self._heap or self._heap[0][0] > self.now():
                return None
            _, seq, key = heapq.heappop(self._heap)
            if key is not None and self._keys.get(key) == seq:
                del self._keys[key]
            return self._jobs.pop(seq)

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("scheduled job %r failed", fn)

    def advance(self, seconds: float) -> None:
        """Manual clock: move time forward, running every job that falls due, in order."""
        if not self.manual:
            raise RuntimeError("advance() needs a manual scheduler")
        target = self._virtual + seconds
        while True:
            with self._cond:
                live = [e for e in self._heap if e[1] in self._jobs]
                nxt = min(live)[0] if live else None
                if nxt is None or nxt > target:
                    self._virtual = target
                    return
                self._virtual = max(self._virtual, nxt)
            fn = self._pop_due()
            if fn is not None:
                self._run(fn)

    def start(self) -> "Scheduler":
        if self.manual or self._thread is not None:
            return self
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="modem-clock", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                live = [e[0] for e in self._heap if e[1] in self._jobs]
                wait = min(live) - self.now() if live else 0.5
                if wait > 0:
                    self._cond.wait(min(wait, 0.5))
                    continue
            fn = self._pop_due()
            if fn is not None:
                self._run(fn)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._jobs.clear()
            self._keys.clear()
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None


class Uicc(StrEnum):
    ABSENT = "absent"
    OFF = "off"
    NOT_READY = "not ready"
    READY = "ready"


@dataclass(frozen=True)
class Timing:
    """Delays of the simulated module in seconds (attach delays are per network, in the network file)."""

    sim_init_s: float = 0.2
    boot_urc_s: float = 0.05
    refresh_s: float = 0.05
    reenumerate_gap_s: float = 0.3


@dataclass(frozen=True)
class RegState:
    stat: int
    network: Network | None = None
    cause: int | None = None


@dataclass
class PdpContext:
    cid: int
    pdp_type: str = "IP"
    apn: str = ""
    active: bool = False
    address: str | None = None


@dataclass
class Faults:
    """Injected misbehaviour; counts of -1 mean "until cleared"."""

    hang_cgla: int = 0
    slow_ok_s: float = 0.0
    slow_ok_count: int = 0
    urc_in_response: str | None = None


REG_MAX_N = {"+CEREG": 5, "+CGREG": 4, "+CREG": 3, "+C5GREG": 5}


def literal_urc(pattern: str) -> str:
    """The line a simple anchored URC regex (``^\\+KSUP: ?0$``) stands for: ``+KSUP: 0``."""
    text = pattern.strip("^$")
    text = re.sub(r"(.) \?", r"\1 ", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return text


def split_refresh_sequence(profile: VendorProfile) -> tuple[list[str], list[str]]:
    """The profile's REFRESH lines split at the first SIM-ready URC: (lines while down, lines when ready).

    Registration lines are left out: the state machine reports registration itself, shaped by +CxREG=n.
    """
    ready = [re.compile(p) for p in profile.sim_ready.urcs]
    domains = tuple(d + ":" for d in REG_MAX_N)
    seq = [line for line in profile.sim_ready.refresh_sequence if not line.upper().startswith(domains)]
    for i, line in enumerate(seq):
        if any(p.search(line) for p in ready):
            return seq[:i], seq[i:]
    return seq, []


class ModemMachine:
    """CFUN/UICC/registration/PDN state; every public method is thread-safe and emits URCs through ``emit``."""

    def __init__(
        self,
        profile: VendorProfile,
        networks: NetworkModel,
        backend: UiccBackend | None,
        subscriber_source: SubscriberSource | None,
        scheduler: Scheduler,
        emit: Callable[[str], None],
        timing: Timing | None = None,
    ):
        self.profile = profile
        self.networks = networks
        self.backend = backend
        self.source = subscriber_source
        self.scheduler = scheduler
        self.emit = emit
        self.timing = timing or Timing()
        self.lock = threading.RLock()
        self.faults = Faults()
        self.down_lines, self.up_lines = split_refresh_sequence(profile)
        self.refresh_count = 0
        self.on_refresh: list[Callable[[], None]] = []
        self._reset_settings()
        self.cfun = 0
        self.uicc = Uicc.ABSENT if backend is None else Uicc.OFF
        self.subscriber: Subscriber | None = None
        self.reg = RegState(0)
        self.sessions: dict[int, int] = {}
        self._next_session = 1

    def _reset_settings(self) -> None:
        self.reg_n = {d: 0 for d in self.profile.registration.domains}
        self.cops_mode = 0
        self.cops_format = 2
        self.cops_plmn: str | None = None
        self.ps_attach = True
        self.pdp: dict[int, PdpContext] = {1: PdpContext(1)}

    # ------------------------------------------------------------------ boot, CFUN, UICC (27.007 §8.2, §8.3)

    def boot(self) -> None:
        """Power-on: settings to defaults, the profile's boot URCs, CFUN at the boot level."""
        with self.lock:
            self._reset_settings()
            self.sessions.clear()
            self.cfun = 0
            self._set_reg(RegState(0))
            if self.backend is not None:
                self.backend.power_off()
                self.uicc = Uicc.OFF
            for pattern in self.profile.reset.boot_urcs:
                line = literal_urc(pattern)
                self.scheduler.call_later(self.timing.boot_urc_s, lambda line=line: self.emit(line), key=f"boot:{line}")
            self._apply_cfun(self.profile.cfun_boot_level)

    def set_cfun(self, fun: int) -> None:
        with self.lock:
            self._apply_cfun(fun)

    def _apply_cfun(self, fun: int) -> None:
        previous, self.cfun = self.cfun, fun
        radio_on = fun == 1
        uicc_on = fun != 0
        if not uicc_on and self.uicc in (Uicc.READY, Uicc.NOT_READY):
            self._detach(0)
            self.scheduler.cancel("sim-ready")
            self.sessions.clear()
            if self.backend is not None:
                self.backend.power_off()
            self.uicc = Uicc.OFF
            self.subscriber = None
        elif uicc_on and self.uicc == Uicc.OFF and self.backend is not None:
            self.uicc = Uicc.NOT_READY
            self.backend.power_on()
            self.scheduler.call_later(self.timing.sim_init_s, lambda: self._sim_ready(initial=True), key="sim-ready")
        if not radio_on and previous == 1:
            self._detach(0)
        elif radio_on and self.uicc == Uicc.READY:
            self._search()

    def _sim_ready(self, initial: bool) -> None:
        with self.lock:
            if self.uicc != Uicc.NOT_READY:
                return
            self.uicc = Uicc.READY
            self.subscriber = self.source.current() if self.source is not None else None
            log.info("UICC ready, subscriber %s", self.subscriber)
            for line in (self.up_lines if not initial or self.profile.sim_ready.urcs else []):
                self.emit(line)
            if self.cfun == 1:
                self._search()

    def refresh(self) -> None:
        """REFRESH "UICC reset" (ETSI TS 102 223 §6.4.7): NOT READY, channels gone, card reset, READY, re-attach."""
        with self.lock:
            if self.backend is None or self.uicc == Uicc.OFF:
                return
            self.refresh_count += 1
            self._detach(2 if self.cfun == 1 else 0)
            self.uicc = Uicc.NOT_READY
            self.sessions.clear()
            self.backend.reset()
            self.subscriber = None
            for line in self.down_lines:
                self.emit(line)
            for hook in list(self.on_refresh):
                hook()
            self.scheduler.call_later(self.timing.sim_init_s, lambda: self._sim_ready(initial=False), key="sim-ready")

    # ------------------------------------------------------------------ registration (27.007 §10.1.22, TS 24.301 §5.5)

    def _search(self) -> None:
        """Start (or restart) an attach attempt towards the network the enabled IMSI selects."""
        if self.cfun != 1 or self.uicc != Uicc.READY or not self.ps_attach or self.cops_mode == 2:
            return
        imsi = self.subscriber.imsi if self.subscriber else None
        outcome = self.networks.attach(imsi, self.cops_plmn if self.cops_mode == 1 else None)
        if self.reg.stat not in (1, 5) or self.reg.network is not outcome.network:
            self._set_reg(RegState(2))
        delay = outcome.network.attach_delay_s if outcome.network else self.networks.search_timeout_s
        self.scheduler.call_later(delay, self._attach_complete, key="attach")

    def _attach_complete(self) -> None:
        with self.lock:
            if self.cfun != 1 or self.uicc != Uicc.READY or not self.ps_attach or self.cops_mode == 2:
                return
            imsi = self.subscriber.imsi if self.subscriber else None
            outcome = self.networks.attach(imsi, self.cops_plmn if self.cops_mode == 1 else None)
            if outcome.network is None:
                self._set_reg(RegState(0))
                return
            if outcome.stat == 3:
                self._set_reg(RegState(3, outcome.network, outcome.reject_cause))
                self._deactivate_all()
                return
            self._set_reg(RegState(outcome.stat, outcome.network))
            self._activate(1)

    def _detach(self, stat: int) -> None:
        self.scheduler.cancel("attach")
        self._deactivate_all()
        self._set_reg(RegState(stat))

    def reevaluate(self) -> None:
        """Coverage or rejects changed: drop a lost serving network, then search again."""
        with self.lock:
            serving = self.reg.network
            if serving is not None and self.reg.stat in (1, 5, 3):
                outcome = self.networks.attach(self.subscriber.imsi if self.subscriber else None,
                                               self.cops_plmn if self.cops_mode == 1 else None)
                if outcome.network is serving and outcome.stat == self.reg.stat:
                    return
                self._detach(2)
            self._search()

    def _set_reg(self, reg: RegState) -> None:
        old, self.reg = self.reg, reg
        if (old.stat, old.network, old.cause) == (reg.stat, reg.network, reg.cause):
            return
        for domain, n in self.reg_n.items():
            if n >= 1:
                self.emit(f"{domain}: {self.format_reg(domain, n, query=False)}")

    def format_reg(self, domain: str, n: int, *, query: bool) -> str:
        """+CxREG body: ``[<n>,]<stat>[,"<tac>","<ci>",<AcT>[,<cause_type>,<reject_cause>]]``."""
        reg = self.reg
        parts = [str(n)] if query else []
        parts.append(str(reg.stat))
        if n >= 2 and reg.network is not None:
            net = reg.network
            parts += [f'"{net.tac}"', f'"{net.ci}"', str(net.act)]
            if n in (3, 5) and reg.stat == 3 and reg.cause is not None:
                parts += ["0", str(reg.cause)]
        return ",".join(parts)

    # ------------------------------------------------------------------ PDN (27.007 §10.1.1, §10.1.10, §10.1.14)

    def _apn_for(self, cid: int) -> str:
        ctx = self.pdp.get(cid)
        if ctx is not None and ctx.apn:
            return ctx.apn
        return self.subscriber.apn if self.subscriber else ""

    def _activate(self, cid: int) -> bool:
        ctx = self.pdp.setdefault(cid, PdpContext(cid))
        net = self.reg.network
        if net is None or self.reg.stat not in (1, 5) or self.subscriber is None or self.subscriber.imsi is None:
            return False
        address = self.networks.address(net, self._apn_for(cid), self.subscriber.imsi)
        ctx.active = address is not None
        ctx.address = address
        return ctx.active

    def _deactivate_all(self) -> None:
        for ctx in self.pdp.values():
            ctx.active = False
            ctx.address = None

    def activate_pdp(self, cid: int, on: bool) -> bool:
        with self.lock:
            if not on:
                ctx = self.pdp.get(cid)
                if ctx is not None:
                    ctx.active, ctx.address = False, None
                return True
            return self._activate(cid)

    @property
    def registered(self) -> bool:
        return self.reg.stat in (1, 5)

    # ------------------------------------------------------------------ network control

    def set_cops(self, mode: int, plmn: str | None = None) -> None:
        with self.lock:
            self.cops_mode = mode
            self.cops_plmn = plmn if mode == 1 else None
            if mode == 2:
                self._detach(0)
            else:
                if self.reg.network is not None and plmn not in (None, self.reg.network.plmn):
                    self._detach(2)
                self._search()

    def set_attach(self, on: bool) -> None:
        with self.lock:
            self.ps_attach = on
            if on:
                self._search()
            else:
                self._detach(0)

    def set_coverage(self, name: str, on: bool) -> None:
        with self.lock:
            self.networks.network(name).coverage = on
            self.reevaluate()

    def set_reject(self, name: str, cause: int | None) -> None:
        with self.lock:
            self.networks.network(name).force_reject = cause
            self.reevaluate()

    def move(self, name: str) -> None:
        """The device moves where only ``name`` has coverage."""
        with self.lock:
            self.networks.network(name)
            for net in self.networks.networks:
                net.coverage = net.name == name
            self.reevaluate()

    # ------------------------------------------------------------------ logical channels (27.007 §8.45)

    def open_session(self, channel: int) -> int:
        with self.lock:
            sid = self._next_session
            self._next_session = self._next_session % 0xFFFF + 1
            self.sessions[sid] = channel
            return sid

    def status(self) -> dict:
        with self.lock:
            net = self.reg.network
            return {
                "vendor": self.profile.name,
                "cfun": self.cfun,
                "uicc": self.uicc.value,
                "iccid": self.subscriber.iccid if self.subscriber else None,
                "imsi": self.subscriber.imsi if self.subscriber else None,
                "stat": self.reg.stat,
                "network": net.name if net else None,
                "plmn": net.plmn if net else None,
                "act": net.act if net else None,
                "reject_cause": self.reg.cause,
                "pdp": {cid: {"apn": self._apn_for(cid), "active": c.active, "address": c.address}
                        for cid, c in sorted(self.pdp.items())},
                "sessions": dict(self.sessions),
                "refresh_count": self.refresh_count,
                "coverage": {n.name: n.coverage for n in self.networks.networks},
            }
