"""Vendor profiles: every module quirk the generic 27.007 driver and the simulated modem need, as data.

One YAML file per module family in ``profiles/``; :func:`load_profile` validates it into a frozen
:class:`VendorProfile` (errors name the file, the key path and what was expected).  The driver
reads commands, URC patterns and timeouts from here; the simulated modem uses the ``format_*``
methods to produce each vendor's reply shapes.  There are no vendor branches in code.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .parsers import ICCID_PARSERS

FALLBACK_PROFILE = "strict-27007"
SESSION_ID_TYPES = ("int", "hex", "bare")
CLA_POLICIES = ("passthrough", "zero", "channel")
APDU_PATHS = ("cgla", "csim")
REG_DOMAINS = ("+CREG", "+CGREG", "+CEREG", "+C5GREG")


class ProfileError(ValueError):
    """A profile file is missing, malformed, or has a key with the wrong type or value."""

    def __init__(self, source: str, key: str, expected: str, got: Any = None):
        self.source = source
        self.key = key
        self.expected = expected
        detail = f"{source}: {key}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(detail)


@dataclass(frozen=True)
class MatchRules:
    """Auto-detection: every listed CGMI regex group must match (any one of its patterns); higher priority wins."""

    cgmi: tuple[str, ...] = ()
    cgmm: tuple[str, ...] = ()
    priority: int = 0

    def matches(self, cgmi: str, cgmm: str) -> bool:
        if not self.cgmi and not self.cgmm:
            return False
        ok_i = not self.cgmi or any(re.search(p, cgmi) for p in self.cgmi)
        ok_m = not self.cgmm or any(re.search(p, cgmm) for p in self.cgmm)
        return ok_i and ok_m


@dataclass(frozen=True)
class IdentitySample:
    """What the module reports for CGMI/CGMM/CGMR/ATI/CGSN (detection tests and the simulator)."""

    cgmi: str
    cgmm: str
    cgmr: str
    ati: tuple[str, ...]
    imei: str


@dataclass(frozen=True)
class IccidSpec:
    command: str
    parser: str
    reply: str
    pad_f: bool = False

    @property
    def reply_prefix(self) -> str | None:
        """``+ICCID:`` for ``+ICCID: {iccid}``; None for a bare reply."""
        m = re.match(r"^([+%#$^*][A-Za-z0-9_]+:)", self.reply)
        return m.group(1) if m else None


@dataclass(frozen=True)
class ResetSpec:
    command: str
    boot_urcs: tuple[str, ...]
    reenumerates: bool
    budget_s: float


@dataclass(frozen=True)
class SimReadySpec:
    """URCs that signal the UICC is usable again, and the literal lines a REFRESH (UICC reset) produces."""

    urcs: tuple[str, ...]
    refresh_sequence: tuple[str, ...]
    refresh_reenumerates: bool


@dataclass(frozen=True)
class CglaReplyShape:
    prefix: bool = True
    space: bool = True
    quotes: bool = True


@dataclass(frozen=True)
class ApduSpec:
    """How the eUICC is reached through this module (27.007 §8.43–8.46, §8.17)."""

    ccho: bool
    cchc: bool
    cgla: bool
    csim: bool
    test_command: bool
    preferred: str
    session_id: str
    cla_policy: str
    max_apdu: int
    auto_get_response: bool
    cgla_reply: CglaReplyShape
    csim_reply: CglaReplyShape


@dataclass(frozen=True)
class RegistrationSpec:
    domains: tuple[str, ...]
    max_n: int
    act_map: Mapping[int, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class VendorProfile:
    name: str
    description: str
    match: MatchRules
    identity: IdentitySample
    init: tuple[str, ...]
    iccid: IccidSpec
    cpin_quoted: bool
    cfun_boot_level: int
    cfun_levels: tuple[int, ...]
    reset: ResetSpec
    sim_ready: SimReadySpec
    final_errors: tuple[str, ...]
    final_ok: tuple[str, ...]
    known_urcs: tuple[str, ...]
    apdu: ApduSpec
    registration: RegistrationSpec
    timeouts: Mapping[str, float] = field(default_factory=dict, compare=False)
    source: str = field(default="", compare=False)

    # ------------------------------------------------------------------ reply shapes (simulator side)

    def format_iccid(self, iccid: str) -> str:
        """The ICCID reply line this module gives for ``iccid`` (decimal digits)."""
        digits = iccid.upper().rstrip("F")
        padded = digits + "F" * (20 - len(digits)) if self.iccid.pad_f else digits
        bcd_src = digits + "F" * (20 - len(digits))
        bcd = "".join(bcd_src[i + 1] + bcd_src[i] for i in range(0, len(bcd_src), 2))
        return self.iccid.reply.format(iccid=padded, bcd=bcd)

    def format_cpin(self, code: str) -> str:
        return f'+CPIN: "{code}"' if self.cpin_quoted else f"+CPIN: {code}"

    def format_ccho(self, session: int) -> str:
        kind = self.apdu.session_id
        if kind == "bare":
            return str(session)
        if kind == "hex":
            return f"+CCHO: {session:08X}"
        return f"+CCHO: {session}"

    def session_token(self, session: int) -> str:
        """How the host writes ``session`` back in +CGLA/+CCHC."""
        return f"{session:08X}" if self.apdu.session_id == "hex" else str(session)

    def format_cgla(self, rapdu: bytes) -> str:
        return _format_len_hex("+CGLA", self.apdu.cgla_reply, rapdu)

    def format_csim(self, rapdu: bytes) -> str:
        return _format_len_hex("+CSIM", self.apdu.csim_reply, rapdu)

    def act_name(self, act: int | None) -> str | None:
        return None if act is None else self.registration.act_map.get(act, f"AcT {act}")


def _format_len_hex(name: str, shape: CglaReplyShape, rapdu: bytes) -> str:
    h = rapdu.hex().upper()
    body = f'{len(h)},"{h}"' if shape.quotes else f"{len(h)},{h}"
    if not shape.prefix:
        return body
    return f"{name}: {body}" if shape.space else f"{name}:{body}"


# --------------------------------------------------------------------------- loading and validation


class _Reader:
    def __init__(self, source: str, data: Any, path: str = ""):
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            raise ProfileError(source, path or "<top>", "a mapping", data)
        self.data = data
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, default: Any, required: bool) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise ProfileError(self.source, self._key(key), "a value (key is required)")
            return default
        return self.data[key]

    def sub(self, key: str, required: bool = True) -> "_Reader":
        return _Reader(self.source, self._get(key, {}, required), self._key(key))

    def str(self, key: str, default: str | None = None, required: bool = False, choices: tuple[str, ...] = ()) -> str:
        v = self._get(key, default, required and default is None)
        if not isinstance(v, str):
            raise ProfileError(self.source, self._key(key), "a string", v)
        if choices and v not in choices:
            raise ProfileError(self.source, self._key(key), f"one of {', '.join(choices)}", v)
        return v

    def bool(self, key: str, default: bool | None = None) -> bool:
        v = self._get(key, default, default is None)
        if not isinstance(v, bool):
            raise ProfileError(self.source, self._key(key), "true or false", v)
        return v

    def int(self, key: str, default: int | None = None) -> int:
        v = self._get(key, default, default is None)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProfileError(self.source, self._key(key), "an integer", v)
        return v

    def number(self, key: str, default: float | None = None) -> float:
        v = self._get(key, default, default is None)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ProfileError(self.source, self._key(key), "a positive number of seconds", v)
        return float(v)

    def strs(self, key: str, default: tuple[str, ...] = (), regex: bool = False) -> tuple[str, ...]:
        v = self._get(key, list(default), False)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ProfileError(self.source, self._key(key), "a list of strings", v)
        if regex:
            for i, p in enumerate(v):
                try:
                    re.compile(p)
                except re.error as exc:
                    raise ProfileError(self.source, f"{self._key(key)}[{i}]", f"a valid regular expression ({exc})", p) from None
        return tuple(v)

    def ints(self, key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        v = self._get(key, list(default), False)
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise ProfileError(self.source, self._key(key), "a list of integers", v)
        return tuple(v)

    def mapping(self, key: str) -> dict:
        v = self._get(key, {}, False)
        if not isinstance(v, dict):
            raise ProfileError(self.source, self._key(key), "a mapping", v)
        return v

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ProfileError(self.source, self._key(unknown[0]), "a known key (typo?)", unknown[0])


def _check_format(source: str, key: str, template: str, allowed: set[str]) -> None:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ProfileError(source, key, f"a format string ({exc})", template) from None
    bad = names - allowed
    if bad:
        raise ProfileError(source, key, f"placeholders among {{{', '.join(sorted(allowed))}}}", template)


def _shape(r: _Reader) -> CglaReplyShape:
    shape = CglaReplyShape(prefix=r.bool("prefix", True), space=r.bool("space", True), quotes=r.bool("quotes", True))
    r.done()
    return shape


def profile_from_mapping(data: Any, source: str = "<mapping>") -> VendorProfile:
    """Validate a parsed YAML document into a :class:`VendorProfile`."""
    top = _Reader(source, data)
    name = top.str("name", required=True)
    if not re.fullmatch(r"[a-z0-9][a-z0-9\-]*", name):
        raise ProfileError(source, "name", "lowercase letters, digits and dashes", name)

    m = top.sub("match", required=False)
    match = MatchRules(m.strs("cgmi", regex=True), m.strs("cgmm", regex=True), m.int("priority", 0))
    m.done()

    i = top.sub("identity")
    identity = IdentitySample(
        cgmi=i.str("cgmi", required=True),
        cgmm=i.str("cgmm", required=True),
        cgmr=i.str("cgmr", required=True),
        ati=i.strs("ati"),
        imei=i.str("imei", required=True),
    )
    i.done()
    if not re.fullmatch(r"\d{15}", identity.imei):
        raise ProfileError(source, "identity.imei", "15 digits", identity.imei)

    ic = top.sub("iccid")
    iccid = IccidSpec(
        command=ic.str("command", required=True),
        parser=ic.str("parser", "generic", choices=tuple(ICCID_PARSERS)),
        reply=ic.str("reply", required=True),
        pad_f=ic.bool("pad_f", False),
    )
    ic.done()
    _check_format(source, "iccid.reply", iccid.reply, {"iccid", "bcd"})

    cf = top.sub("cfun")
    cfun_boot = cf.int("boot_level", 1)
    cfun_levels = cf.ints("levels", (0, 1, 4))
    cf.done()

    rs = top.sub("reset")
    reset = ResetSpec(
        command=rs.str("command", required=True),
        boot_urcs=rs.strs("boot_urcs", regex=True),
        reenumerates=rs.bool("reenumerates", False),
        budget_s=rs.number("budget_s", 60.0),
    )
    rs.done()

    sr = top.sub("sim_ready")
    sim_ready = SimReadySpec(
        urcs=sr.strs("urcs", regex=True),
        refresh_sequence=sr.strs("refresh_sequence"),
        refresh_reenumerates=sr.bool("refresh_reenumerates", False),
    )
    sr.done()

    fr = top.sub("final_results", required=False)
    final_errors, final_ok = fr.strs("error"), fr.strs("ok")
    fr.done()

    ap = top.sub("apdu")
    apdu = ApduSpec(
        ccho=ap.bool("ccho"),
        cchc=ap.bool("cchc"),
        cgla=ap.bool("cgla"),
        csim=ap.bool("csim"),
        test_command=ap.bool("test_command"),
        preferred=ap.str("preferred", "cgla", choices=APDU_PATHS),
        session_id=ap.str("session_id", "int", choices=SESSION_ID_TYPES),
        cla_policy=ap.str("cla_policy", "passthrough", choices=CLA_POLICIES),
        max_apdu=ap.int("max_apdu", 255),
        auto_get_response=ap.bool("auto_get_response"),
        cgla_reply=_shape(ap.sub("cgla_reply", required=False)),
        csim_reply=_shape(ap.sub("csim_reply", required=False)),
    )
    ap.done()
    if not 5 <= apdu.max_apdu <= 65535:
        raise ProfileError(source, "apdu.max_apdu", "5..65535 bytes", apdu.max_apdu)
    if apdu.preferred == "cgla" and not (apdu.cgla and apdu.ccho):
        raise ProfileError(source, "apdu.preferred", "csim when ccho/cgla are unsupported", apdu.preferred)
    if apdu.preferred == "csim" and not apdu.csim:
        raise ProfileError(source, "apdu.preferred", "cgla when csim is unsupported", apdu.preferred)

    rg = top.sub("registration")
    domains = rg.strs("domains", ("+CEREG",))
    for d in domains:
        if d not in REG_DOMAINS:
            raise ProfileError(source, "registration.domains", f"entries among {', '.join(REG_DOMAINS)}", d)
    max_n = rg.int("max_n", 2)
    if not 0 <= max_n <= 5:
        raise ProfileError(source, "registration.max_n", "0..5", max_n)
    act_raw = rg.mapping("act_map")
    act_map = {}
    for k, v in act_raw.items():
        if not isinstance(k, int) or not isinstance(v, str):
            raise ProfileError(source, f"registration.act_map.{k}", "integer AcT: name", v)
        act_map[k] = v
    rg.done()

    timeouts_raw = top.mapping("timeouts")
    timeouts = {}
    for k, v in timeouts_raw.items():
        if not isinstance(k, str) or not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ProfileError(source, f"timeouts.{k}", "command prefix: positive seconds", v)
        timeouts[k] = float(v)

    profile = VendorProfile(
        name=name,
        description=top.str("description", ""),
        match=match,
        identity=identity,
        init=top.strs("init"),
        iccid=iccid,
        cpin_quoted=top.bool("cpin_quoted", False),
        cfun_boot_level=cfun_boot,
        cfun_levels=cfun_levels,
        reset=reset,
        sim_ready=sim_ready,
        final_errors=final_errors,
        final_ok=final_ok,
        known_urcs=top.strs("known_urcs", regex=True),
        apdu=apdu,
        registration=RegistrationSpec(domains, max_n, MappingProxyType(act_map)),
        timeouts=MappingProxyType(timeouts),
        source=source,
    )
    top.done()
    return profile


def _profile_dir():
    return resources.files(__package__).joinpath("profiles")


def load_profile_file(path: str | Path) -> VendorProfile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(str(p), "<file>", "a readable YAML file", str(exc)) from None
    return _parse(text, str(p))


def _parse(text: str, source: str) -> VendorProfile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(source, "<yaml>", f"valid YAML ({exc})") from None
    profile = profile_from_mapping(data, source)
    stem = Path(source).stem
    if stem and source.endswith(".yaml") and stem != profile.name:
        raise ProfileError(source, "name", f"the file name stem {stem!r}", profile.name)
    return profile


def profile_names() -> list[str]:
    return sorted(e.name[:-5] for e in _profile_dir().iterdir() if e.name.endswith(".yaml"))


@cache
def load_profile(name: str) -> VendorProfile:
    """Load and validate the packaged profile ``name`` (e.g. ``quectel-bg95``)."""
    entry = _profile_dir().joinpath(f"{name}.yaml")
    if not entry.is_file():
        raise ProfileError(f"profiles/{name}.yaml", "<file>", f"one of {', '.join(profile_names())}", name)
    return _parse(entry.read_text(encoding="utf-8"), f"profiles/{name}.yaml")


def all_profiles() -> list[VendorProfile]:
    return [load_profile(n) for n in profile_names()]


def detect(cgmi: str, cgmm: str) -> VendorProfile:
    """Profile whose match rules fit the +CGMI/+CGMM strings (highest priority first), else strict-27007."""
    candidates = [p for p in all_profiles() if p.match.matches(cgmi.strip(), cgmm.strip())]
    if not candidates:
        return load_profile(FALLBACK_PROFILE)
    return max(candidates, key=lambda p: (p.match.priority, p.name))
