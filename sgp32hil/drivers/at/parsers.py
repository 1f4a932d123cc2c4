"""Pure parsers for 3GPP TS 27.007 (and common vendor) information lines, with typed results.

Every parser takes one line or the information lines of an :class:`~.errors.AtResponse`
(``Sequence[str]``), never touches I/O, and raises :class:`ParseError` naming the offending line
and what was expected.  Section numbers refer to 3GPP TS 27.007.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Lines = str | Sequence[str]


class ParseError(ValueError):
    """A reply line did not have the expected shape."""

    def __init__(self, what: str, line: object, expected: str):
        self.what = what
        self.line = line
        self.expected = expected
        super().__init__(f"{what}: cannot parse {line!r}; expected {expected}")


# --------------------------------------------------------------------------- helpers


def _as_lines(lines: Lines) -> list[str]:
    if isinstance(lines, str):
        return [ln for ln in re.split(r"[\r\n]+", lines) if ln.strip()]
    return [ln for ln in lines if ln.strip()]


def strip_prefix(line: str, prefix: str) -> str | None:
    """Body after ``prefix`` and its colon (case-insensitive, any spacing), or None if the line lacks it."""
    s = line.strip()
    name = prefix.rstrip(":")
    if not s.upper().startswith(name.upper()):
        return None
    rest = s[len(name):].lstrip()
    if rest.startswith(":"):
        return rest[1:].strip()
    return None if prefix.endswith(":") else rest.strip()


def _pick(what: str, lines: Lines, prefix: str, *, bare: bool = False, expected: str = "") -> str:
    """Body of the first line carrying ``prefix``; with ``bare`` the first line if none carries it."""
    items = _as_lines(lines)
    for line in items:
        body = strip_prefix(line, prefix)
        if body is not None:
            return body
    if bare and items:
        return items[0].strip()
    raise ParseError(what, items[0] if len(items) == 1 else items, expected or f"a line starting with {prefix!r}")


def split_fields(body: str) -> list[str]:
    """Split a comma-separated parameter list, honouring double quotes; fields keep their quotes, lose outer spaces."""
    fields: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == "," and not quoted:
            fields.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur).strip())
    return fields


def unquote(field: str) -> str:
    f = field.strip()
    if len(f) >= 2 and f[0] == '"' and f[-1] == '"':
        return f[1:-1]
    return f


def _int(what: str, line: str, field: str, *, base: int = 10, optional: bool = False) -> int | None:
    f = unquote(field).replace(" ", "")
    if f == "" and optional:
        return None
    try:
        return int(f, base)
    except ValueError:
        raise ParseError(what, line, f"{'a hexadecimal' if base == 16 else 'an'} integer, got {field!r}") from None


def _opt_str(field: str | None) -> str | None:
    if field is None:
        return None
    v = unquote(field)
    return v if v != "" else None


# --------------------------------------------------------------------------- identity (§5)


@dataclass(frozen=True)
class ModemIdentity:
    manufacturer: str
    model: str
    revision: str
    imei: str | None = None


def parse_info_text(lines: Lines, prefix: str, what: str = "information text") -> str:
    """+CGMI / +CGMM / +CGMR (§5.1–5.3): the text, with or without the ``+CGMx:`` prefix and quotes."""
    items = _as_lines(lines)
    if not items:
        raise ParseError(what, lines, "one information line")
    bodies = []
    for line in items:
        body = strip_prefix(line, prefix)
        bodies.append(unquote(body if body is not None else line.strip()))
    return " ".join(b for b in bodies if b)


def parse_cgsn(lines: Lines) -> str:
    """+CGSN (§5.4): IMEI (14–17 digits), bare or ``+CGSN: "…"``."""
    body = unquote(_pick("+CGSN", lines, "+CGSN:", bare=True))
    if not re.fullmatch(r"\d{14,17}", body):
        raise ParseError("+CGSN", body, "14 to 17 digits (IMEI/IMEISV)")
    return body


@dataclass(frozen=True)
class AtiInfo:
    manufacturer: str | None
    model: str | None
    revision: str | None
    lines: tuple[str, ...]


def parse_ati(lines: Lines) -> AtiInfo:
    """ATI (V.250 §6.1.3) product information, e.g. ``Quectel`` / ``BG96`` / ``Revision: BG96MAR02A07M1G``."""
    items = [ln.strip() for ln in _as_lines(lines)]
    if not items:
        raise ParseError("ATI", lines, "at least one line")
    fields: dict[str, str] = {}
    plain: list[str] = []
    for line in items:
        m = re.match(r"^(Manufacturer|Model|Revision|Rev|Firmware|IMEI)\s*:\s*(.*)$", line, re.IGNORECASE)
        if m:
            fields[m.group(1).lower()] = m.group(2).strip()
        else:
            plain.append(line)
    manufacturer = fields.get("manufacturer") or (plain[0] if plain else None)
    model = fields.get("model") or (plain[1] if len(plain) > 1 else None)
    revision = fields.get("revision") or fields.get("rev") or fields.get("firmware") or (plain[2] if len(plain) > 2 else None)
    return AtiInfo(manufacturer, model, revision, tuple(items))


# --------------------------------------------------------------------------- SIM (§8.3, §8.18)


@dataclass(frozen=True)
class PinState:
    """+CPIN? code (§8.3): READY, SIM PIN, SIM PUK, PH-SIM PIN, … ; NOT READY/NOT INSERTED for vendor states."""

    code: str

    @property
    def ready(self) -> bool:
        return self.code == "READY"


def parse_cpin(lines: Lines) -> PinState:
    """``+CPIN: READY``, nRF91's ``+CPIN: "SIM PIN"``."""
    body = unquote(_pick("+CPIN", lines, "+CPIN:", expected="'+CPIN: <code>'"))
    code = " ".join(body.upper().split())
    if not re.fullmatch(r"[A-Z0-9][A-Z0-9 \-]*", code):
        raise ParseError("+CPIN", body, "a PIN code such as READY or SIM PIN")
    return PinState(code)


_ICCID_PREFIXES = ("+QCCID:", "+ICCID:", "+CCID:", "#CCID:", "%XICCID:", "^ICCID:", "+CICCID:")


def decode_iccid_bcd(hexstr: str) -> str:
    """EF_ICCID content (TS 102 221 §13.2): BCD with swapped nibbles, F padding removed."""
    h = hexstr.strip().strip('"')
    if len(h) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", h):
        raise ParseError("EF_ICCID", hexstr, "an even number of hex digits")
    swapped = "".join(h[i + 1] + h[i] for i in range(0, len(h), 2))
    return _normalise_iccid(swapped, hexstr)


def _normalise_iccid(raw: str, line: str) -> str:
    digits = raw.strip().strip('"').upper().rstrip("F")
    if not re.fullmatch(r"\d{18,20}", digits):
        raise ParseError("ICCID", line, "18 to 20 decimal digits (optionally F-padded)")
    return digits


def parse_iccid(lines: Lines) -> str:
    """ICCID in any vendor form: +CCID/+QCCID/+ICCID/#CCID/%XICCID (F pad kept by nRF91), bare digits,
    or ``+CRSM: 144,0,"98…"`` (EF_ICCID read, nibble-swapped BCD, quotes optional)."""
    items = _as_lines(lines)
    for line in items:
        s = line.strip()
        if s.upper().startswith("+CRSM:"):
            crsm = parse_crsm(s)
            if crsm.sw != 0x9000:
                raise ParseError("ICCID", line, f"+CRSM status 144,0 (got {crsm.sw1},{crsm.sw2})")
            return decode_iccid_bcd(crsm.data.hex())
        for prefix in _ICCID_PREFIXES:
            body = strip_prefix(s, prefix)
            if body is not None:
                return _normalise_iccid(body, line)
    for line in items:
        if re.fullmatch(r'"?\d{18,20}F?"?', line.strip(), re.IGNORECASE):
            return _normalise_iccid(line, line)
    raise ParseError("ICCID", items, "+CCID/+QCCID/+ICCID/#CCID/%XICCID/+CRSM line or 18-20 bare digits")


def parse_iccid_crsm(lines: Lines) -> str:
    """ICCID strictly from ``+CRSM: 144,0,"…"`` (AT+CRSM=176,12258,0,0,10)."""
    return parse_iccid([ln for ln in _as_lines(lines) if ln.strip().upper().startswith("+CRSM:")] or _as_lines(lines)[:1])


ICCID_PARSERS: dict[str, Callable[[Lines], str]] = {
    "generic": parse_iccid,
    "crsm": parse_iccid_crsm,
}


@dataclass(frozen=True)
class CrsmResponse:
    sw1: int
    sw2: int
    data: bytes

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2


def parse_crsm(lines: Lines) -> CrsmResponse:
    """+CRSM (§8.18): ``+CRSM: <sw1>,<sw2>[,<response>]``; response quoted or not."""
    body = _pick("+CRSM", lines, "+CRSM:")
    f = split_fields(body)
    if len(f) < 2:
        raise ParseError("+CRSM", body, "<sw1>,<sw2>[,<response>]")
    sw1 = _int("+CRSM", body, f[0])
    sw2 = _int("+CRSM", body, f[1])
    data = _hex_bytes("+CRSM", body, unquote(f[2]) if len(f) > 2 else "")
    return CrsmResponse(sw1, sw2, data)


def _hex_bytes(what: str, line: str, h: str) -> bytes:
    h = h.replace(" ", "")
    if len(h) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", h):
        raise ParseError(what, line, "an even number of hex digits")
    return bytes.fromhex(h)


# --------------------------------------------------------------------------- CFUN (§8.2)


@dataclass(frozen=True)
class Cfun:
    fun: int
    extra: tuple[int, ...] = ()


def parse_cfun(lines: Lines) -> Cfun:
    """``+CFUN: <fun>`` (some vendors add ``,<STK mode>``)."""
    body = _pick("+CFUN", lines, "+CFUN:")
    f = split_fields(body)
    fun = _int("+CFUN", body, f[0])
    assert fun is not None
    return Cfun(fun, tuple(_int("+CFUN", body, x) or 0 for x in f[1:] if x))


# --------------------------------------------------------------------------- registration (§7.2, §10.1.20, §10.1.22)

# Layout of the fields after <stat> for each domain, as in 27.007 for n=5.
_REG_LAYOUT: dict[str, tuple[str, ...]] = {
    "+CREG": ("area", "ci", "act", "cause_type", "reject_cause"),
    "+CGREG": ("area", "ci", "act", "rac", "cause_type", "reject_cause", "active_time", "gprs_ready_timer", "periodic_tau"),
    "+CEREG": ("area", "ci", "act", "cause_type", "reject_cause", "active_time", "periodic_tau"),
    "+C5GREG": ("area", "ci", "act", "allowed_nssai_length", "allowed_nssai", "cause_type", "reject_cause"),
}
REG_STAT_TEXT = {
    0: "not registered",
    1: "registered, home",
    2: "searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
    6: "registered for SMS only, home",
    7: "registered for SMS only, roaming",
    8: "attached for emergency bearer services only",
    9: "registered for CSFB not preferred, home",
    10: "registered for CSFB not preferred, roaming",
    80: "registered, temporary connection lost",
    90: "not registered, UICC failure",
}


@dataclass(frozen=True)
class Registration:
    """+CREG/+CGREG/+CEREG/+C5GREG in query shape (``<n>,<stat>,…``) or URC shape (``<stat>,…``).

    ``area`` is the LAC or TAC and ``ci`` the cell id (hex in the reply, int here); ``active_time``
    and ``periodic_tau`` are the raw 8-bit strings of TS 24.008 GPRS Timer 2/3.
    """

    domain: str
    stat: int
    n: int | None = None
    area: int | None = None
    ci: int | None = None
    act: int | None = None
    rac: int | None = None
    cause_type: int | None = None
    reject_cause: int | None = None
    active_time: str | None = None
    periodic_tau: str | None = None

    @property
    def registered(self) -> bool:
        return self.stat in (1, 5, 6, 7, 9, 10)

    @property
    def roaming(self) -> bool:
        return self.stat in (5, 7, 10)

    @property
    def denied(self) -> bool:
        return self.stat == 3

    @property
    def searching(self) -> bool:
        return self.stat == 2

    @property
    def stat_text(self) -> str:
        return REG_STAT_TEXT.get(self.stat, f"stat {self.stat}")


_REG_PREFIX = re.compile(r"^\s*(\+C(?:5G|G|E)?REG)\s*:\s*(.*)$", re.IGNORECASE)


def parse_registration(line: str, *, solicited: bool | None = None) -> Registration:
    """Parse one registration line.

    ``solicited=True`` is the reply to ``AT+CxREG?`` (first field ``<n>``), False a URC.  With
    None the shape is guessed: one field is a URC, two a query; otherwise a quoted or longer
    than three-character second field is a LAC/TAC (URC).  Pass it explicitly when known.
    """
    m = _REG_PREFIX.match(line)
    if not m:
        raise ParseError("registration", line, "+CREG:/+CGREG:/+CEREG:/+C5GREG: line")
    domain = m.group(1).upper()
    f = split_fields(m.group(2))
    if not f or f[0] == "":
        raise ParseError(domain, line, "<stat> or <n>,<stat>")
    if solicited is None:
        if len(f) == 1:
            solicited = False
        elif len(f) == 2:
            solicited = True
        else:
            second = f[1].strip()
            solicited = not (second.startswith('"') or len(second) > 3 or not second.isdigit())
    n: int | None = None
    if solicited:
        if len(f) < 2:
            raise ParseError(domain, line, "<n>,<stat>[,…] (query reply)")
        n = _int(domain, line, f[0])
        f = f[1:]
    stat = _int(domain, line, f[0])
    assert stat is not None
    values: dict[str, object] = {}
    layout = _REG_LAYOUT[domain]
    rest = f[1:]
    if len(rest) > len(layout):
        raise ParseError(domain, line, f"at most {len(layout) + 1} fields after <n> for {domain}")
    for name, raw in zip(layout, rest, strict=False):
        if name in ("area", "ci"):
            values[name] = _int(domain, line, raw, base=16, optional=True)
        elif name == "rac":
            values[name] = _int(domain, line, raw, base=16, optional=True)
        elif name in ("act", "cause_type", "reject_cause"):
            values[name] = _int(domain, line, raw, optional=True)
        elif name in ("active_time", "periodic_tau"):
            values[name] = _opt_str(raw)
    return Registration(domain=domain, stat=stat, n=n, **values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- operator (§7.3)


@dataclass(frozen=True)
class OperatorSelection:
    """+COPS? reply: mode, format, operator (in that format), AcT."""

    mode: int
    format: int | None = None
    operator: str | None = None
    act: int | None = None


def parse_cops_query(lines: Lines) -> OperatorSelection:
    """``+COPS: 0,2,"21401",7`` or just ``+COPS: 0`` (not registered)."""
    body = _pick("+COPS", lines, "+COPS:")
    f = split_fields(body)
    mode = _int("+COPS", body, f[0])
    assert mode is not None
    fmt = _int("+COPS", body, f[1], optional=True) if len(f) > 1 else None
    oper = _opt_str(f[2]) if len(f) > 2 else None
    act = _int("+COPS", body, f[3], optional=True) if len(f) > 3 else None
    return OperatorSelection(mode, fmt, oper, act)


@dataclass(frozen=True)
class NetworkInfo:
    """One operator of +COPS=? (status 0 unknown, 1 available, 2 current, 3 forbidden)."""

    status: int
    long_name: str | None
    short_name: str | None
    plmn: str
    act: int | None = None


_COPS_ENTRY = re.compile(
    r"""\(\s*(\d+)\s*,            # stat
        \s*(?:"([^"]*)")?\s*,     # long alphanumeric (may be empty or missing)
        \s*(?:"([^"]*)")?\s*,     # short alphanumeric
        \s*"([^"]*)"\s*           # numeric
        \)?\s*                    # some firmwares close the group before AcT: ("…","31026"),2)
        (?:,\s*(\d+)\s*)?
        \)""",
    re.VERBOSE,
)


def parse_cops_test(lines: Lines) -> list[NetworkInfo]:
    """+COPS=? list: survives several ``+COPS:`` lines, empty names, missing AcT and unbalanced parentheses.

    The trailing ``,(0-4),(0-2)`` mode/format ranges are ignored.  A reply with no operator
    entries gives an empty list; a reply that is not +COPS at all raises ParseError.
    """
    items = _as_lines(lines)
    bodies = [b for b in (strip_prefix(ln, "+COPS:") for ln in items) if b is not None]
    if not bodies:
        raise ParseError("+COPS=?", items, "one or more '+COPS: (…)' lines")
    text = ",".join(bodies)
    result = []
    for m in _COPS_ENTRY.finditer(text):
        plmn = m.group(4).strip()
        if not re.fullmatch(r"\d{5,7}", plmn):
            continue
        result.append(
            NetworkInfo(
                status=int(m.group(1)),
                long_name=m.group(2) or None,
                short_name=m.group(3) or None,
                plmn=plmn,
                act=int(m.group(5)) if m.group(5) is not None else None,
            )
        )
    return result


# --------------------------------------------------------------------------- signal (§8.5, §8.69)


@dataclass(frozen=True)
class Csq:
    rssi: int
    ber: int

    @property
    def rssi_dbm(self) -> int | None:
        """-113 dBm + 2·rssi; None for 99 (unknown)."""
        return None if self.rssi == 99 else -113 + 2 * self.rssi


def parse_csq(lines: Lines) -> Csq:
    """``+CSQ: 17,99``."""
    body = _pick("+CSQ", lines, "+CSQ:")
    f = split_fields(body)
    if len(f) != 2:
        raise ParseError("+CSQ", body, "<rssi>,<ber>")
    rssi, ber = (_int("+CSQ", body, x) for x in f)
    assert rssi is not None and ber is not None
    return Csq(rssi, ber)


@dataclass(frozen=True)
class Cesq:
    rxlev: int
    ber: int
    rscp: int
    ecno: int
    rsrq: int
    rsrp: int

    @property
    def rsrp_dbm(self) -> int | None:
        """Upper bound of the reported range: 0 → < -140, 97 → ≥ -44; None for 255."""
        return None if self.rsrp == 255 else -141 + self.rsrp

    @property
    def rsrq_db(self) -> float | None:
        return None if self.rsrq == 255 else -20.0 + self.rsrq / 2


def parse_cesq(lines: Lines) -> Cesq:
    """``+CESQ: 99,99,255,255,20,45``."""
    body = _pick("+CESQ", lines, "+CESQ:")
    f = split_fields(body)
    if len(f) != 6:
        raise ParseError("+CESQ", body, "<rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>")
    v = [_int("+CESQ", body, x) for x in f]
    return Cesq(*v)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PDP (§10.1.1, §10.1.9, §10.1.10, §10.1.14)


@dataclass(frozen=True)
class PdpContext:
    cid: int
    pdp_type: str
    apn: str
    address: str | None = None
    d_comp: int | None = None
    h_comp: int | None = None


def parse_cgdcont(lines: Lines) -> list[PdpContext]:
    """``+CGDCONT: 1,"IP","internet","0.0.0.0",0,0`` — one line per context."""
    out = []
    for line in _as_lines(lines):
        body = strip_prefix(line, "+CGDCONT:")
        if body is None:
            continue
        f = split_fields(body)
        if len(f) < 3:
            raise ParseError("+CGDCONT", line, '<cid>,"<PDP_type>","<APN>"[,…]')
        cid = _int("+CGDCONT", line, f[0])
        assert cid is not None
        out.append(
            PdpContext(
                cid=cid,
                pdp_type=unquote(f[1]),
                apn=unquote(f[2]),
                address=_opt_str(f[3]) if len(f) > 3 else None,
                d_comp=_int("+CGDCONT", line, f[4], optional=True) if len(f) > 4 else None,
                h_comp=_int("+CGDCONT", line, f[5], optional=True) if len(f) > 5 else None,
            )
        )
    return out


def parse_cgact(lines: Lines) -> dict[int, bool]:
    """``+CGACT: 1,1`` lines → {cid: active}."""
    out: dict[int, bool] = {}
    for line in _as_lines(lines):
        body = strip_prefix(line, "+CGACT:")
        if body is None:
            continue
        f = split_fields(body)
        if len(f) != 2:
            raise ParseError("+CGACT", line, "<cid>,<state>")
        cid, state = (_int("+CGACT", line, x) for x in f)
        assert cid is not None
        out[cid] = state == 1
    return out


def parse_cgatt(lines: Lines) -> bool:
    """``+CGATT: 1``."""
    body = _pick("+CGATT", lines, "+CGATT:")
    value = _int("+CGATT", body, body)
    if value not in (0, 1):
        raise ParseError("+CGATT", body, "0 or 1")
    return value == 1


@dataclass(frozen=True)
class PdpAddress:
    cid: int
    addresses: tuple[str, ...]


def parse_cgpaddr(lines: Lines) -> list[PdpAddress]:
    """``+CGPADDR: 1,"10.45.0.2"[,"<IPv6>"]`` (quotes optional)."""
    out = []
    for line in _as_lines(lines):
        body = strip_prefix(line, "+CGPADDR:")
        if body is None:
            continue
        f = split_fields(body)
        cid = _int("+CGPADDR", line, f[0])
        assert cid is not None
        out.append(PdpAddress(cid, tuple(a for a in (unquote(x) for x in f[1:]) if a)))
    return out


# --------------------------------------------------------------------------- UICC logical channels (§8.17, §8.43, §8.45, §8.46)


@dataclass(frozen=True)
class SessionId:
    """A +CCHO session id: ``raw`` is echoed back verbatim in +CGLA/+CCHC; ``value`` is its integer reading."""

    raw: str
    value: int


def parse_ccho(lines: Lines, session_id: str = "auto") -> SessionId:
    """``+CCHO: 1``, ``+CCHO:1``, ``+CCHO: "1"``, a bare ``1`` (FM350) or a hex handle (Sierra EM/MC).

    ``session_id`` is ``int``, ``hex`` or ``auto`` (hex when the token has a 0x prefix or A–F digits).
    """
    items = _as_lines(lines)
    body = None
    for line in items:
        b = strip_prefix(line, "+CCHO:")
        if b is not None:
            body = b
            break
    if body is None:
        bare = [ln.strip() for ln in items if re.fullmatch(r'"?(0[xX])?[0-9A-Fa-f]+"?', ln.strip())]
        if len(bare) != 1:
            raise ParseError("+CCHO", items, "'+CCHO: <sessionid>' or a bare session id")
        body = bare[0]
    token = unquote(body)
    if not re.fullmatch(r"(0[xX])?[0-9A-Fa-f]+", token):
        raise ParseError("+CCHO", body, "a decimal or hexadecimal session id")
    is_hex = session_id == "hex" or (session_id == "auto" and (token[:2].lower() == "0x" or not token.isdigit()))
    if session_id == "int" and not token.isdigit():
        raise ParseError("+CCHO", body, "a decimal session id")
    value = int(token, 16) if is_hex else int(token)
    return SessionId(token, value)


def _parse_length_hex(what: str, prefix: str, lines: Lines) -> bytes:
    body = _pick(what, lines, prefix)
    f = split_fields(body)
    if len(f) != 2:
        raise ParseError(what, body, '<length>,"<response hex>"')
    length = _int(what, body, f[0])
    hexdata = unquote(f[1]).replace(" ", "")
    data = _hex_bytes(what, body, hexdata)
    if length not in (len(hexdata), len(data)):
        raise ParseError(what, body, f"<length> {length} to equal the hex character count {len(hexdata)}")
    if len(data) < 2:
        raise ParseError(what, body, "a response of at least SW1 SW2")
    return data


def parse_cgla(lines: Lines) -> bytes:
    """``+CGLA: 46,"BF3E…9000"``, ``+CGLA:4,"611A"`` (SIMCom) or ``+CGLA: 4,9000`` → R-APDU bytes (data ‖ SW)."""
    return _parse_length_hex("+CGLA", "+CGLA:", lines)


def parse_csim(lines: Lines) -> bytes:
    """``+CSIM: 4,"6115"`` → R-APDU bytes (TPDU level: the host resolves 61xx/6Cxx)."""
    return _parse_length_hex("+CSIM", "+CSIM:", lines)
