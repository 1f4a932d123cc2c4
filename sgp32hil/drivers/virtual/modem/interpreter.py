"""AT command interpreter of the simulated modem (ITU-T V.250 framing, 3GPP TS 27.007 commands).

Bytes in, bytes out: :meth:`AtInterpreter.feed` assembles command lines (terminated by S3 = CR,
V.250 §5.2.1), echoes them when E1, runs each command (several extended commands may be chained with
``;``) and writes information text and the final result code (V.250 §5.7; verbose with V1, numeric with
V0; errors as ``ERROR`` or ``+CME ERROR`` per +CMEE, 27.007 §9.1).  Vendor reply shapes, commands and
deviations all come from the :class:`~sgp32hil.drivers.at.profiles.VendorProfile`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ...at.errors import CME_ERRORS
from ...at.profiles import VendorProfile
from .backend import UiccBackend, UiccError
from .machine import ModemMachine, Uicc

log = logging.getLogger(__name__)

MAX_LINE = 2048
_EXTENDED = re.compile(r"^([+%#$^*&][A-Z0-9_]+)(=\?|\?|=(.*))?$", re.IGNORECASE | re.DOTALL)
_HEX = re.compile(r"^[0-9A-Fa-f]*$")
_UICC_CME = {Uicc.ABSENT: 10, Uicc.OFF: 13, Uicc.NOT_READY: 14}


class CommandError(Exception):
    """A command failed with +CME ERROR ``code`` (plain ERROR when ``code`` is None)."""

    def __init__(self, code: int | None = None):
        self.code = code
        super().__init__(f"CME {code}" if code is not None else "ERROR")


@dataclass(frozen=True)
class Arg:
    text: str
    quoted: bool = False


@dataclass
class Reply:
    lines: list[str] = field(default_factory=list)
    hang: bool = False


def split_args(body: str) -> list[Arg]:
    """Comma-separated parameters; double-quoted strings keep commas (V.250 §5.3.2)."""
    if body == "":
        return []
    args, cur, quoted, in_q = [], [], False, False
    for ch in body:
        if ch == '"':
            in_q = not in_q
            quoted = True
        elif ch == "," and not in_q:
            args.append(Arg("".join(cur).strip(), quoted))
            cur, quoted = [], False
        else:
            cur.append(ch)
    if in_q:
        raise CommandError(50)
    args.append(Arg("".join(cur).strip(), quoted))
    return args


def _int(arg: Arg, lo: int = 0, hi: int = 1 << 31) -> int:
    if arg.quoted or not arg.text.isdigit():
        raise CommandError(50)
    value = int(arg.text)
    if not lo <= value <= hi:
        raise CommandError(50)
    return value


def _split_chain(line: str) -> list[str]:
    """``+CMEE=2;+CEREG=5`` → two commands (``;`` outside quotes)."""
    parts, cur, in_q = [], [], False
    for ch in line:
        if ch == '"':
            in_q = not in_q
        if ch == ";" and not in_q:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()] or [""]


class AtInterpreter:
    """One modem's command processor; ``write`` sends bytes to the host, ``hooks`` reset/re-enumerate it."""

    def __init__(
        self,
        profile: VendorProfile,
        machine: ModemMachine,
        backend: UiccBackend | None,
        write: Callable[[bytes], None],
        *,
        reset_hook: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
        max_line: int = MAX_LINE,
    ):
        self.profile = profile
        self.machine = machine
        self.backend = backend
        self.write = write
        self.reset_hook = reset_hook
        self.stop = stop or threading.Event()
        self.max_line = max_line
        self.echo = True
        self.verbose = True
        self.cmee = 0
        self._buf = bytearray()
        self._overflow = False
        self.commands = 0
        self._literal: dict[str, Callable[[], Reply]] = {
            _norm(profile.iccid.command): self._iccid,
            _norm(profile.reset.command): self._reset,
        }
        for cmd in profile.init:
            self._literal.setdefault(_norm(cmd), Reply)
        ap = profile.apdu
        self._ext: dict[str, Callable[[str, list[Arg]], Reply]] = {
            "+CGMI": self._text(profile.identity.cgmi), "+GMI": self._text(profile.identity.cgmi),
            "+CGMM": self._text(profile.identity.cgmm), "+GMM": self._text(profile.identity.cgmm),
            "+CGMR": self._text(profile.identity.cgmr), "+GMR": self._text(profile.identity.cgmr),
            "+CGSN": self._text(profile.identity.imei), "+GSN": self._text(profile.identity.imei),
            "+CMEE": self._cmee, "+CFUN": self._cfun, "+CPIN": self._cpin, "+CIMI": self._cimi,
            "+COPS": self._cops, "+CSQ": self._csq, "+CESQ": self._cesq, "+CGDCONT": self._cgdcont,
            "+CGACT": self._cgact, "+CGATT": self._cgatt, "+CGPADDR": self._cgpaddr,
        }
        for domain in profile.registration.domains:
            self._ext[domain] = self._reg(domain)
        for name, supported, handler in (("+CCHO", ap.ccho, self._ccho), ("+CCHC", ap.cchc, self._cchc),
                                         ("+CGLA", ap.cgla, self._cgla), ("+CSIM", ap.csim, self._csim)):
            if supported:
                self._ext[name] = handler

    def reset_settings(self) -> None:
        """V.250 defaults after a power cycle (E1, V1, +CMEE=0)."""
        self.echo, self.verbose, self.cmee = True, True, 0
        self._buf.clear()
        self._overflow = False

    # ------------------------------------------------------------------ framing

    def feed(self, data: bytes) -> None:
        for b in data:
            if b == 0x0D:
                line, overflow = bytes(self._buf), self._overflow
                self._buf.clear()
                self._overflow = False
                if overflow:
                    self._send_final("ERROR")
                    continue
                if self.echo and line:
                    self.write(line + b"\r")
                self._line(line.decode("ascii"))
            elif b == 0x08:
                if self._buf:
                    self._buf.pop()
            elif 0x20 <= b < 0x7F:
                if self._overflow:
                    continue
                self._buf.append(b)
                if len(self._buf) > self.max_line:
                    self._buf.clear()
                    self._overflow = True

    def _line(self, text: str) -> None:
        idx = text.upper().find("AT")
        if idx < 0:
            return
        self.commands += 1
        body = text[idx + 2:].strip()
        out: list[str] = []
        try:
            for cmd in _split_chain(body):
                reply = self.run(cmd.strip())
                if reply.hang:
                    log.info("fault: no reply to AT%s", body[:40])
                    return
                out += reply.lines
        except CommandError as exc:
            self._respond(out, self._error_final(exc.code))
            return
        self._respond(out, "OK")

    def _error_final(self, code: int | None) -> str:
        if code is None or self.cmee == 0:
            return "ERROR"
        if self.cmee == 1:
            return f"+CME ERROR: {code}"
        return f"+CME ERROR: {CME_ERRORS.get(code, 'unknown')}"

    def _respond(self, lines: list[str], final: str) -> None:
        faults = self.machine.faults
        if faults.slow_ok_count and faults.slow_ok_s > 0:
            if faults.slow_ok_count > 0:
                faults.slow_ok_count -= 1
            if self.stop.wait(faults.slow_ok_s):
                return
        parts = [self._frame(line) for line in lines]
        if faults.urc_in_response is not None and lines:
            parts.append(b"\r\n" + faults.urc_in_response.encode() + b"\r\n")
            faults.urc_in_response = None
        parts.append(self._final_bytes(final))
        self.write(b"".join(parts))

    def _frame(self, line: str) -> bytes:
        return (b"\r\n" + line.encode() + b"\r\n") if self.verbose else (line.encode() + b"\r\n")

    def _final_bytes(self, final: str) -> bytes:
        if self.verbose:
            return b"\r\n" + final.encode() + b"\r\n"
        code = {"OK": "0", "ERROR": "4"}.get(final, final)
        return code.encode() + b"\r"

    def _send_final(self, final: str) -> None:
        self.write(self._final_bytes(final))

    # ------------------------------------------------------------------ dispatch

    def run(self, cmd: str) -> Reply:
        literal = self._literal.get(_norm("AT" + cmd))
        if literal is not None:
            return literal()
        upper = cmd.upper()
        if upper == "":
            return Reply()
        if m := re.fullmatch(r"E([01]?)", upper):
            self.echo = m.group(1) == "1"
            return Reply()
        if m := re.fullmatch(r"V([01]?)", upper):
            self.verbose = m.group(1) == "1"
            return Reply()
        if upper in ("Z", "Z0", "&F", "&F0"):
            self.echo, self.verbose, self.cmee = True, True, 0
            return Reply()
        if upper in ("I", "I0"):
            return Reply(list(self.profile.identity.ati or (self.profile.identity.cgmi, self.profile.identity.cgmm)))
        m = _EXTENDED.match(cmd)
        if not m:
            raise CommandError(4)
        name = m.group(1).upper()
        handler = self._ext.get(name)
        if handler is None:
            raise CommandError(4)
        suffix = m.group(2) or ""
        if suffix == "=?":
            kind, args = "test", []
        elif suffix == "?":
            kind, args = "query", []
        elif suffix.startswith("="):
            kind, args = "set", split_args(m.group(3) or "")
        else:
            kind, args = "exec", []
        return handler(kind, args)

    # ------------------------------------------------------------------ identity, CMEE, CFUN (27.007 §5, §8.2, §9.1)

    def _text(self, value: str) -> Callable[[str, list[Arg]], Reply]:
        def handler(kind: str, args: list[Arg]) -> Reply:
            if kind == "test":
                return Reply()
            if kind != "exec":
                raise CommandError(50)
            return Reply([value])

        return handler

    def _cmee(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return Reply(["+CMEE: (0-2)"])
        if kind == "query":
            return Reply([f"+CMEE: {self.cmee}"])
        if kind == "set" and len(args) == 1:
            self.cmee = _int(args[0], 0, 2)
            return Reply()
        raise CommandError(50)

    def _cfun(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return Reply([f"+CFUN: ({','.join(str(x) for x in self.profile.cfun_levels)}),(0-1)"])
        if kind == "query":
            return Reply([f"+CFUN: {self.machine.cfun}"])
        if kind != "set" or not 1 <= len(args) <= 2:
            raise CommandError(50)
        fun = _int(args[0])
        rst = _int(args[1], 0, 1) if len(args) == 2 else 0
        if fun not in (0, 1, 4) or fun not in self.profile.cfun_levels:
            raise CommandError(50)
        if rst == 1:
            return self._reset()
        self.machine.set_cfun(fun)
        return Reply()

    def _reset(self) -> Reply:
        if self.reset_hook is not None:
            self.reset_hook()
        return Reply()

    # ------------------------------------------------------------------ SIM (27.007 §8.3, §5.6; ICCID per vendor)

    def _require_uicc(self) -> None:
        state = self.machine.uicc
        if state != Uicc.READY:
            raise CommandError(_UICC_CME[state])

    def _cpin(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return Reply()
        if kind != "query":
            raise CommandError(3)
        self._require_uicc()
        return Reply([self.profile.format_cpin("READY")])

    def _cimi(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return Reply()
        if kind != "exec":
            raise CommandError(50)
        self._require_uicc()
        sub = self.machine.subscriber
        if sub is None or sub.imsi is None:
            raise CommandError(13)
        return Reply([sub.imsi])

    def _iccid(self) -> Reply:
        self._require_uicc()
        sub = self.machine.subscriber
        if sub is None:
            raise CommandError(13)
        return Reply([self.profile.format_iccid(sub.iccid)])

    # ------------------------------------------------------------------ registration, operator, signal (§7.3, §8.5, §8.69, §10.1.22)

    def _reg(self, domain: str) -> Callable[[str, list[Arg]], Reply]:
        top = min(self.machine_max_n(domain), self.profile.registration.max_n)

        def handler(kind: str, args: list[Arg]) -> Reply:
            if kind == "test":
                return Reply([f"{domain}: (0-{top})"])
            if kind == "query":
                n = self.machine.reg_n.get(domain, 0)
                with self.machine.lock:
                    return Reply([f"{domain}: {self.machine.format_reg(domain, n, query=True)}"])
            if kind == "set" and len(args) <= 1:
                self.machine.reg_n[domain] = _int(args[0], 0, top) if args else 0
                return Reply()
            raise CommandError(50)

        return handler

    @staticmethod
    def machine_max_n(domain: str) -> int:
        from .machine import REG_MAX_N

        return REG_MAX_N.get(domain, 2)

    def _oper(self, net, fmt: int) -> str:
        return {0: net.long_name, 1: net.short_name}.get(fmt, net.plmn)

    def _cops(self, kind: str, args: list[Arg]) -> Reply:
        m = self.machine
        if kind == "query":
            with m.lock:
                if m.registered and m.reg.network is not None:
                    net = m.reg.network
                    return Reply([f'+COPS: {m.cops_mode},{m.cops_format},"{self._oper(net, m.cops_format)}",{net.act}'])
                return Reply([f"+COPS: {m.cops_mode}"])
        if kind == "test":
            if m.cfun != 1:
                raise CommandError(3)
            with m.lock:
                imsi = m.subscriber.imsi if m.subscriber else None
                entries = []
                for net in m.networks.in_coverage():
                    if m.registered and m.reg.network is net:
                        stat = 2
                    elif imsi is not None and m.networks.attach(imsi, net.plmn).stat == 3:
                        stat = 3
                    else:
                        stat = 1
                    entries.append(f'({stat},"{net.long_name}","{net.short_name}","{net.plmn}",{net.act})')
            return Reply([f"+COPS: {','.join(entries)},,(0-4),(0-2)"])
        if kind != "set" or not args:
            raise CommandError(50)
        mode = _int(args[0], 0, 4)
        if mode == 3:
            if len(args) != 2:
                raise CommandError(50)
            m.cops_format = _int(args[1], 0, 2)
            return Reply()
        if mode in (1, 4):
            if len(args) < 3:
                raise CommandError(50)
            fmt, oper = _int(args[1], 0, 2), args[2].text
            net = next((n for n in m.networks.networks if self._oper(n, fmt) == oper), None)
            if net is None or not net.coverage:
                if mode == 1:
                    raise CommandError(30)
                m.set_cops(0)
                return Reply()
            m.set_cops(1, net.plmn)
            return Reply()
        if len(args) != 1:
            raise CommandError(50)
        m.set_cops(mode)
        return Reply()

    def _csq(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return Reply(["+CSQ: (0-31,99),(0-7,99)"])
        if kind != "exec":
            raise CommandError(50)
        net = self.machine.reg.network if self.machine.registered else None
        return Reply([f"+CSQ: {net.signal.rssi},99" if net else "+CSQ: 99,99"])

    def _cesq(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return Reply(["+CESQ: (0-63,99),(0-7,99),(0-96,255),(0-49,255),(0-34,255),(0-97,255)"])
        if kind != "exec":
            raise CommandError(50)
        net = self.machine.reg.network if self.machine.registered else None
        tail = f"{net.signal.rsrq},{net.signal.rsrp}" if net else "255,255"
        return Reply([f"+CESQ: 99,99,255,255,{tail}"])

    # ------------------------------------------------------------------ packet domain (§10.1.1, §10.1.9, §10.1.10, §10.1.14)

    def _cgdcont(self, kind: str, args: list[Arg]) -> Reply:
        m = self.machine
        if kind == "test":
            return Reply(['+CGDCONT: (1-15),"IP",,,(0),(0)', '+CGDCONT: (1-15),"IPV4V6",,,(0),(0)'])
        if kind == "query":
            with m.lock:
                return Reply([f'+CGDCONT: {c.cid},"{c.pdp_type}","{m._apn_for(c.cid)}","{c.address or "0.0.0.0"}",0,0'
                              for c in sorted(m.pdp.values(), key=lambda c: c.cid)])
        if kind != "set" or not args:
            raise CommandError(50)
        cid = _int(args[0], 1, 15)
        with m.lock:
            if len(args) == 1:
                m.pdp.pop(cid, None)
                return Reply()
            pdp_type = args[1].text.upper() or "IP"
            if pdp_type not in ("IP", "IPV6", "IPV4V6", "NON-IP"):
                raise CommandError(50)
            ctx = m.pdp.get(cid)
            if ctx is None:
                from .machine import PdpContext

                ctx = m.pdp[cid] = PdpContext(cid)
            ctx.pdp_type = pdp_type
            ctx.apn = args[2].text if len(args) > 2 else ""
        return Reply()

    def _cgact(self, kind: str, args: list[Arg]) -> Reply:
        m = self.machine
        if kind == "test":
            return Reply(["+CGACT: (0,1)"])
        if kind == "query":
            with m.lock:
                return Reply([f"+CGACT: {c.cid},{int(c.active)}" for c in sorted(m.pdp.values(), key=lambda c: c.cid)])
        if kind != "set" or not args:
            raise CommandError(50)
        state = _int(args[0], 0, 1)
        cids = [_int(a, 1, 15) for a in args[1:]] or sorted(m.pdp)
        for cid in cids:
            if not m.activate_pdp(cid, bool(state)):
                raise CommandError(30 if not m.registered else 127)
        return Reply()

    def _cgatt(self, kind: str, args: list[Arg]) -> Reply:
        m = self.machine
        if kind == "test":
            return Reply(["+CGATT: (0,1)"])
        if kind == "query":
            return Reply([f"+CGATT: {int(m.registered)}"])
        if kind != "set" or len(args) != 1:
            raise CommandError(50)
        m.set_attach(bool(_int(args[0], 0, 1)))
        return Reply()

    def _cgpaddr(self, kind: str, args: list[Arg]) -> Reply:
        m = self.machine
        if kind == "test":
            return Reply([f"+CGPADDR: ({','.join(str(c) for c in sorted(m.pdp))})"])
        if kind not in ("exec", "set"):
            raise CommandError(50)
        with m.lock:
            cids = [_int(a, 1, 15) for a in args] or sorted(m.pdp)
            lines = []
            for cid in cids:
                ctx = m.pdp.get(cid)
                if ctx is None:
                    raise CommandError(21)
                lines.append(f'+CGPADDR: {cid},"{ctx.address}"' if ctx.address else f"+CGPADDR: {cid}")
        return Reply(lines)

    # ------------------------------------------------------------------ UICC access (§8.17 +CSIM, §8.45 +CCHO, §8.46 +CCHC, §8.43 +CGLA)

    def _test_supported(self) -> Reply:
        if not self.profile.apdu.test_command:
            raise CommandError(4)
        return Reply()

    def _session(self, arg: Arg) -> int:
        token = arg.text
        try:
            sid = int(token, 16) if self.profile.apdu.session_id == "hex" else int(token)
        except ValueError:
            raise CommandError(50) from None
        if sid not in self.machine.sessions:
            raise CommandError(21)
        return sid

    def _apdu_arg(self, length: Arg, data: Arg) -> bytes:
        n = _int(length)
        h = data.text
        if not _HEX.match(h) or len(h) % 2 or len(h) != n or len(h) < 8:
            raise CommandError(50)
        if len(h) // 2 > self.profile.apdu.max_apdu + 6:
            raise CommandError(50)
        return bytes.fromhex(h)

    def _ccho(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return self._test_supported()
        if kind != "set" or len(args) != 1 or not _HEX.match(args[0].text) or not 10 <= len(args[0].text) <= 32 \
                or len(args[0].text) % 2:
            raise CommandError(50)
        self._require_uicc()
        assert self.backend is not None
        with self.machine.lock:
            try:
                channel = self.backend.open_channel(bytes.fromhex(args[0].text))
            except UiccError as exc:
                log.info("+CCHO failed: %s", exc)
                raise CommandError(exc.cme) from None
            sid = self.machine.open_session(channel)
        return Reply([self.profile.format_ccho(sid)])

    def _cchc(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return self._test_supported()
        if kind != "set" or len(args) != 1:
            raise CommandError(50)
        self._require_uicc()
        assert self.backend is not None
        with self.machine.lock:
            sid = self._session(args[0])
            channel = self.machine.sessions.pop(sid)
            try:
                self.backend.close_channel(channel)
            except UiccError as exc:
                raise CommandError(exc.cme) from None
        return Reply()

    def _cgla(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return self._test_supported()
        if kind != "set" or len(args) != 3:
            raise CommandError(50)
        faults = self.machine.faults
        self._require_uicc()
        assert self.backend is not None
        sid = self._session(args[0])
        apdu = self._apdu_arg(args[1], args[2])
        if faults.hang_cgla:
            if faults.hang_cgla > 0:
                faults.hang_cgla -= 1
            return Reply(hang=True)
        with self.machine.lock:
            channel = self.machine.sessions.get(sid)
            if channel is None:
                raise CommandError(21)
            try:
                rapdu = self.backend.transmit_channel(channel, apdu, get_response=self.profile.apdu.auto_get_response)
            except UiccError as exc:
                raise CommandError(exc.cme) from None
        return Reply([self.profile.format_cgla(rapdu)])

    def _csim(self, kind: str, args: list[Arg]) -> Reply:
        if kind == "test":
            return self._test_supported()
        if kind != "set" or len(args) != 2:
            raise CommandError(50)
        self._require_uicc()
        assert self.backend is not None
        apdu = self._apdu_arg(args[0], args[1])
        with self.machine.lock:
            try:
                rapdu = self.backend.transmit_basic(apdu)
            except UiccError as exc:
                raise CommandError(exc.cme) from None
        return Reply([self.profile.format_csim(rapdu)])


def _norm(command: str) -> str:
    return "".join(command.split()).upper()
