"""Generic 3GPP TS 27.007 modem driver over an :class:`~.channel.AtChannel`, steered by a :class:`~.profiles.VendorProfile`."""

from __future__ import annotations

import logging
import queue
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from re import Pattern

from . import parsers as P
from .channel import AtChannel, UrcEvent, default_expect
from .errors import AtError, AtResponse, AtTimeout, PortGone
from .port import PortIdentity
from .profiles import VendorProfile, detect, load_profile
from .transcript import Transcript

log = logging.getLogger(__name__)

SIM_ERROR_STATES = {10: "NOT INSERTED", 13: "SIM FAILURE", 14: "SIM BUSY", 15: "SIM WRONG"}


@dataclass(frozen=True)
class SimState:
    """+CPIN? outcome; ``code`` is the +CPIN code or NOT INSERTED / SIM FAILURE / SIM BUSY / SIM WRONG."""

    code: str

    @property
    def ready(self) -> bool:
        return self.code == "READY"


@dataclass(frozen=True)
class Signal:
    csq: P.Csq | None
    cesq: P.Cesq | None


def _query_shape(domain: str) -> Pattern[str]:
    """A +CxREG line in query shape (``<n>,<stat>…``): its second field is a bare small integer."""
    return re.compile(rf"^\{domain}:\s*\d+\s*,\s*\d{{1,3}}\s*(,|$)", re.IGNORECASE)


class Modem:
    """A cellular module driven through 27.007 commands; vendor differences come from ``profile``."""

    def __init__(self, channel: AtChannel, profile: VendorProfile | None = None):
        self.channel = channel
        self.profile = profile or load_profile("strict-27007")
        self.channel.apply_profile(self.profile)
        self.reg_n: dict[str, int] = {}

    @classmethod
    def open(
        cls,
        port: PortIdentity | str,
        profile: VendorProfile | str | None = None,
        *,
        transcript: Transcript | None = None,
        baudrate: int = 115200,
        init: bool = True,
    ) -> "Modem":
        """Open ``port``; ``profile`` None auto-detects from +CGMI/+CGMM, a str names a packaged profile."""
        channel = AtChannel(port, baudrate=baudrate, transcript=transcript).open()
        modem = cls(channel, load_profile(profile) if isinstance(profile, str) else profile)
        try:
            if init:
                modem.init()
            if profile is None:
                modem.use_profile(modem.detect_profile())
                if init:
                    modem.init()
        except Exception:
            channel.close()
            raise
        return modem

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Modem":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def use_profile(self, profile: VendorProfile) -> None:
        self.profile = profile
        self.channel.apply_profile(profile)

    def at(self, command: str, **kwargs) -> AtResponse:
        return self.channel.command(command, **kwargs)

    # ------------------------------------------------------------------ init and identity (V.250 §6.2, 27.007 §5)

    def init(self) -> None:
        """ATE0 (echo off), ATV1 (verbose), +CMEE=2 (text errors), registration URCs, profile init commands."""
        self.wait_responsive(10.0)
        for cmd in ("ATE0", "ATV1", "AT+CMEE=2"):
            self.at(cmd)
        for domain in self.profile.registration.domains:
            self.reg_n[domain] = self._enable_registration_urc(domain)
        for cmd in self.profile.init:
            self.at(cmd)

    def _enable_registration_urc(self, domain: str) -> int:
        """Highest +CxREG=<n> the module accepts, starting at the profile's ``max_n``."""
        for n in sorted({self.profile.registration.max_n, 2, 1} & set(range(self.profile.registration.max_n + 1)), reverse=True):
            try:
                self.at(f"AT{domain}={n}")
                return n
            except AtError:
                continue
        return 0

    def wait_responsive(self, timeout: float) -> None:
        """Send ``AT`` until it answers OK (absorbs boot noise); raises AtTimeout."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.at("AT", timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return
            except (AtTimeout, AtError) as exc:
                last = exc
        raise AtTimeout("AT", timeout, reason=f"module not responsive ({last})")

    def identity(self) -> P.ModemIdentity:
        imei: str | None
        try:
            imei = P.parse_cgsn(self.at("AT+CGSN").lines)
        except (AtError, P.ParseError):
            imei = None
        return P.ModemIdentity(
            manufacturer=P.parse_info_text(self.at("AT+CGMI").lines, "+CGMI:"),
            model=P.parse_info_text(self.at("AT+CGMM").lines, "+CGMM:"),
            revision=P.parse_info_text(self.at("AT+CGMR").lines, "+CGMR:"),
            imei=imei,
        )

    def detect_profile(self) -> VendorProfile:
        ident = self.identity()
        return detect(ident.manufacturer, ident.model)

    # ------------------------------------------------------------------ SIM (§8.3)

    def sim_state(self) -> SimState:
        try:
            return SimState(P.parse_cpin(self.at("AT+CPIN?").lines).code)
        except AtError as exc:
            if exc.code in SIM_ERROR_STATES:
                return SimState(SIM_ERROR_STATES[exc.code])
            raise

    def wait_sim_ready(self, timeout: float, poll_s: float = 1.0) -> SimState:
        """Poll +CPIN? (and watch the profile's SIM-ready URCs) until READY."""
        deadline = time.monotonic() + timeout
        state = SimState("UNKNOWN")
        pattern = re.compile("|".join(f"(?:{p})" for p in self.profile.sim_ready.urcs)) if self.profile.sim_ready.urcs else None
        while True:
            mark = self.channel.urc_mark()
            try:
                state = self.sim_state()
            except AtError as exc:
                state = SimState(f"ERROR {exc.key or exc.code}")
            if state.ready:
                return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AtTimeout("AT+CPIN?", timeout, reason=f"SIM not ready (last state {state.code})")
            if pattern is not None:
                try:
                    self.channel.wait_urc(pattern, min(poll_s, remaining), since=mark)
                except AtTimeout:
                    pass
            else:
                time.sleep(min(poll_s, remaining))

    def iccid(self) -> str:
        spec = self.profile.iccid
        expect = tuple(dict.fromkeys(p for p in (*default_expect(spec.command), spec.reply_prefix) if p))
        return P.ICCID_PARSERS[spec.parser](self.at(spec.command, expect=expect).lines)

    # ------------------------------------------------------------------ functionality (§8.2)

    def cfun(self) -> int:
        return P.parse_cfun(self.at("AT+CFUN?").lines).fun

    def set_cfun(self, fun: int, rst: int | None = None) -> None:
        self.at(f"AT+CFUN={fun}" + (f",{rst}" if rst is not None else ""))

    def reset(self, budget_s: float | None = None) -> None:
        """Run the profile's reset command, follow the port through re-enumeration, wait for a boot URC, re-init."""
        spec = self.profile.reset
        budget = spec.budget_s if budget_s is None else budget_s
        deadline = time.monotonic() + budget
        mark = self.channel.urc_mark()
        try:
            self.at(spec.command, timeout=min(15.0, budget))
        except (AtTimeout, PortGone):
            log.info("%s: no final result to %s (module went down first)", self.channel.identity, spec.command)
        if spec.reenumerates or self.channel.gone:
            self.channel.wait_gone(min(10.0, max(0.0, deadline - time.monotonic())))
            self.channel.reopen(max(0.0, deadline - time.monotonic()))
        if spec.boot_urcs:
            pattern = re.compile("|".join(f"(?:{p})" for p in spec.boot_urcs))
            try:
                self.channel.wait_urc(pattern, max(0.0, deadline - time.monotonic()), since=mark)
            except AtTimeout:
                log.warning("%s: no boot URC after reset; continuing with AT polling", self.channel.identity)
        self.wait_responsive(max(1.0, deadline - time.monotonic()))
        self.init()

    # ------------------------------------------------------------------ registration (§7.2, §10.1.20, §10.1.22)

    def registration(self, domain: str = "+CEREG") -> P.Registration:
        resp = self.at(f"AT{domain}?", expect=(_query_shape(domain),))
        lines = resp.with_prefix(domain + ":")
        if not lines:
            raise P.ParseError(domain, resp.lines, f"a {domain}: line in the reply to AT{domain}?")
        return P.parse_registration(lines[0], solicited=True)

    def wait_registered(
        self,
        predicate: Callable[[P.Registration], bool] | None = None,
        timeout: float = 300.0,
        domain: str = "+CEREG",
        poll_s: float = 10.0,
    ) -> P.Registration:
        """Wait until ``predicate`` (default: registered home or roaming) holds, consuming URCs and re-querying every ``poll_s``."""
        check = predicate or (lambda r: r.registered)
        deadline = time.monotonic() + timeout
        with self.channel.subscribe(domain + ":") as sub:
            reg = self.registration(domain)
            next_poll = time.monotonic() + poll_s
            while not check(reg):
                now = time.monotonic()
                if now >= deadline:
                    raise AtTimeout(f"wait_registered({domain})", timeout, reason=f"last state {reg.stat_text} ({reg})")
                try:
                    event = sub.get(min(deadline, next_poll) - now)
                    reg = P.parse_registration(event.line, solicited=False)
                except P.ParseError as exc:
                    log.warning("%s: ignoring unparsable registration URC: %s", self.channel.identity, exc)
                except queue.Empty:
                    reg = self.registration(domain)
                    next_poll = time.monotonic() + poll_s
            return reg

    # ------------------------------------------------------------------ operator and signal (§7.3, §8.5, §8.69)

    def operator(self) -> P.OperatorSelection:
        return P.parse_cops_query(self.at("AT+COPS?").lines)

    def scan_operators(self) -> list[P.NetworkInfo]:
        return P.parse_cops_test(self.at("AT+COPS=?").lines)

    def signal(self) -> Signal:
        csq = cesq = None
        try:
            csq = P.parse_csq(self.at("AT+CSQ").lines)
        except AtError:
            pass
        try:
            cesq = P.parse_cesq(self.at("AT+CESQ").lines)
        except AtError:
            pass
        return Signal(csq, cesq)

    # ------------------------------------------------------------------ packet domain (§10.1)

    def define_pdp(self, cid: int, apn: str, pdp_type: str = "IP") -> None:
        self.at(f'AT+CGDCONT={cid},"{pdp_type}","{apn}"')

    def pdp_contexts(self) -> list[P.PdpContext]:
        return P.parse_cgdcont(self.at("AT+CGDCONT?").lines)

    def activate_pdp(self, cid: int, active: bool = True) -> None:
        self.at(f"AT+CGACT={1 if active else 0},{cid}")

    def pdp_states(self) -> dict[int, bool]:
        return P.parse_cgact(self.at("AT+CGACT?").lines)

    def attached(self) -> bool:
        return P.parse_cgatt(self.at("AT+CGATT?").lines)

    def pdp_address(self, cid: int) -> tuple[str, ...]:
        for entry in P.parse_cgpaddr(self.at(f"AT+CGPADDR={cid}").lines):
            if entry.cid == cid:
                return entry.addresses
        return ()

    # ------------------------------------------------------------------ UICC access (§8.17, §8.43, §8.45, §8.46)

    def open_logical_channel(self, aid: bytes) -> P.SessionId:
        resp = self.at(f'AT+CCHO="{aid.hex().upper()}"')
        return P.parse_ccho(resp.lines, self.profile.apdu.session_id if self.profile.apdu.session_id != "bare" else "int")

    def transmit_logical(self, session: P.SessionId, apdu: bytes, timeout: float | None = None) -> bytes:
        """One +CGLA exchange; the CLA byte is sent as given (apply ``profile.apdu.cla_policy`` above this layer)."""
        h = apdu.hex().upper()
        return P.parse_cgla(self.at(f'AT+CGLA={session.raw},{len(h)},"{h}"', timeout=timeout).lines)

    def close_logical_channel(self, session: P.SessionId) -> None:
        self.at(f"AT+CCHC={session.raw}")

    def csim(self, apdu: bytes, timeout: float | None = None) -> bytes:
        h = apdu.hex().upper()
        return P.parse_csim(self.at(f'AT+CSIM={len(h)},"{h}"', timeout=timeout).lines)

    # ------------------------------------------------------------------ URCs

    def wait_for_urc(self, pattern: str | Pattern[str], timeout: float, since: int | None = None) -> UrcEvent:
        """First URC matching ``pattern`` (prefix or regex) after ``since`` (a :meth:`AtChannel.urc_mark`), else from now."""
        return self.channel.wait_urc(pattern, timeout, since)
