"""Bench and rack files: YAML -> validated, frozen dataclasses.

A bench is one slot of a rack: the DUT's modem (by a stable port identity), the eUICC access path, the
IPA mode, the eIM and SM-DP+ to use, the expected profiles, the reset ladder, time budgets and capability
tags. Every error is a :class:`BenchError` naming the file, the line, the dotted key and what was
expected. Relative paths resolve against the folder of the file that holds them.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

SGP32_VERSIONS = ("1.0", "1.2")
IPA_MODES = ("host", "device", "ipae")
EUICC_PATHS = ("pcsc", "modem", "virtual")
APDU_PATHS = ("auto", "cgla", "csim")
PORT_URL_SCHEMES = ("socket", "rfc2217")
DEFAULT_VPCD_PORT = 35963
DEFAULT_SERVER_PORTS = {"eim": 8444, "smdp": 8443}
DERIVED_TAG_KEYS = ("ipa", "sgp32", "euicc")

_BARE_TTY = re.compile(r"^/dev/tty(USB|ACM)\d+$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._+-]*(=[a-z0-9][a-z0-9._+-]*)?$")
_T = "tag:yaml.org,2002:"


class BenchError(ValueError):
    """A bench or rack file is unreadable or invalid; ``file``, ``line`` (1-based) and ``key`` say where."""

    def __init__(self, problem: str, file: str | Path, line: int | None = None, key: str = ""):
        self.problem = problem
        self.file = str(file)
        self.line = line
        self.key = key
        where = self.file + (f":{line}" if line else "")
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


# --- model -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModemPort:
    """Stable identity of the modem's AT port: exactly one of path, USB serial (+ interface), URL, virtual."""

    path: str | None = None
    usb_serial: str | None = None
    usb_interface: int | None = None
    url: str | None = None
    virtual: bool = False

    @property
    def spec(self) -> str | None:
        """The identity as ``PortIdentity.parse`` reads it; None for the simulated modem (its pty is made at start)."""
        if self.virtual:
            return None
        if self.usb_serial is not None:
            return f"usb:{self.usb_serial}" + (f":{self.usb_interface}" if self.usb_interface is not None else "")
        return self.url or self.path

    def __str__(self) -> str:
        return self.spec or "virtual"


@dataclass(frozen=True)
class Modem:
    """The DUT's cellular module. ``vendor`` is a profile name or ``auto``; ``vendor_file`` a lab's own profile."""

    port: ModemPort
    vendor: str = "auto"
    vendor_file: Path | None = None
    baudrate: int = 115200


@dataclass(frozen=True)
class EuiccAccess:
    """How APDUs reach the eUICC: a PC/SC reader, the modem's +CCHO/+CGLA or +CSIM, or the software eUICC."""

    via: Literal["pcsc", "modem", "virtual"]
    reader: str | int | None = None
    atr: str | None = None
    apdu_path: Literal["auto", "cgla", "csim"] = "auto"
    state: Path | None = None
    vpcd_port: int | None = None


@dataclass(frozen=True)
class Ipa:
    """``host``: our IPAd drives the eUICC; ``device``: the DUT's own IPAd polls the eIM; ``ipae``: IPA in the eUICC."""

    mode: Literal["host", "device", "ipae"] = "host"
    poll_interval_s: float = 10.0


@dataclass(frozen=True)
class Server:
    """An eIM or SM-DP+: bundled (started by the harness on loopback with a test PKI) or a lab's own by URL."""

    role: Literal["eim", "smdp"]
    bundled: bool
    host: str | None = None
    port: int | None = None
    pki: Path | None = None
    url: str | None = None
    ca: Path | None = None

    @property
    def address(self) -> str:
        """``host:port`` as an eUICC's eIM configuration or an activation code names it."""
        if self.bundled:
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            return f"{host}:{self.port}"
        return urlsplit(self.url or "").netloc

    @property
    def base_url(self) -> str:
        return f"https://{self.address}" if self.bundled else (self.url or "").rstrip("/")


@dataclass(frozen=True)
class BootstrapProfile:
    """The profile the eUICC ships with; ``network`` names where its IMSI registers."""

    iccid: str
    imsi: str | None = None
    network: str | None = None


@dataclass(frozen=True)
class OperationalProfile:
    """A profile the tests download; without ``package`` the bundled SM-DP+ builds one from ICCID/IMSI/APN."""

    name: str
    imsi: str
    apn: str
    iccid: str | None = None
    network: str | None = None
    package: Path | None = None


@dataclass(frozen=True)
class Profiles:
    bootstrap: BootstrapProfile | None = None
    operational: tuple[OperationalProfile, ...] = ()

    def named(self, name: str) -> OperationalProfile:
        for p in self.operational:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.operational) or "none"
        raise KeyError(f"no operational profile {name!r} (known: {known})")


@dataclass(frozen=True)
class ResetStep:
    """One rung of the reset ladder: an AT command to the modem, or a host command (relay, uhubctl, PDU)."""

    kind: Literal["at", "command"]
    at: str | None = None
    argv: tuple[str, ...] = ()
    timeout_s: float = 60.0
    name: str = ""

    def describe(self) -> str:
        return self.name or (self.at if self.kind == "at" else shlex.join(self.argv)) or self.kind


@dataclass(frozen=True)
class Budgets:
    """Per-procedure time budgets in seconds; retries must fit inside them."""

    attach: float = 180.0
    download: float = 300.0
    switch: float = 180.0
    fallback: float = 300.0
    eim_contact: float = 120.0


BUDGET_NAMES = tuple(f.name for f in fields(Budgets))


@dataclass(frozen=True)
class Bench:
    """A validated bench. ``capabilities`` are the declared tags; :attr:`tags` adds the derived ones."""

    name: str
    euicc: EuiccAccess
    sgp32_version: str = "1.2"
    capabilities: tuple[str, ...] = ()
    description: str = ""
    modem: Modem | None = None
    ipa: Ipa = field(default_factory=Ipa)
    eim: Server | None = None
    smdp: Server | None = None
    profiles: Profiles = field(default_factory=Profiles)
    networks: Path | None = None
    reset_ladder: tuple[ResetStep, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    source: Path | None = None

    @property
    def tags(self) -> frozenset[str]:
        """Declared capabilities plus ``ipa=<mode>``, ``sgp32=<version>``, ``euicc=<via>`` and ``modem`` if any."""
        derived = {f"ipa={self.ipa.mode}", f"sgp32={self.sgp32_version}", f"euicc={self.euicc.via}"}
        if self.modem:
            derived.add("modem")
        return frozenset(self.capabilities) | derived

    def has(self, *caps: str) -> bool:
        return all(c in self.tags for c in caps)

    def with_version(self, version: str) -> "Bench":
        if version not in SGP32_VERSIONS:
            raise BenchError(f"expected one of {', '.join(SGP32_VERSIONS)}, got {version!r}",
                             self.source or "<bench>", None, "sgp32_version")
        return replace(self, sgp32_version=version)

    @property
    def pki_dir(self) -> Path | None:
        """The test PKI of the bundled servers (SM-DP+ first), which the software eUICC is issued from too."""
        for server in (self.smdp, self.eim):
            if server and server.bundled and server.pki:
                return server.pki
        return None

    @property
    def eim_address(self) -> str:
        return self.eim.address if self.eim else ""

    @property
    def bootstrap_iccid(self) -> str | None:
        return self.profiles.bootstrap.iccid if self.profiles.bootstrap else None


@dataclass(frozen=True)
class Rack:
    """Benches by slot name (each bench's ``name``)."""

    benches: tuple[Bench, ...]
    name: str = ""
    source: Path | None = None

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.benches)

    def slot(self, name: str) -> Bench:
        for b in self.benches:
            if b.name == name:
                return b
        raise BenchError(f"no slot {name!r} (slots: {', '.join(self.slots) or 'none'})", self.source or "<rack>")

    def matching(self, *caps: str) -> tuple[Bench, ...]:
        return tuple(b for b in self.benches if b.has(*caps))


def default_bench_path() -> Path:
    """The embedded virtual bench of this checkout (``fixtures/benches/virtual.yaml`` beside ``sgp32hil/``)."""
    return Path(__file__).resolve().parents[2] / "fixtures" / "benches" / "virtual.yaml"


# --- YAML with positions -----------------------------------------------------------------------------

_constructor = SafeConstructor()


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kind = {"null": "null", "bool": "a boolean", "int": "an integer", "float": "a number",
            "str": "a string", "timestamp": "a date"}.get(node.tag.removeprefix(_T), node.tag)
    if kind == "null":
        return "null"
    text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
    return f"{kind} {text!r}"


class _At:
    """A node with its file and dotted key path; every read validates and raises BenchError in place."""

    def __init__(self, file: Path, node: Node, key: str):
        self.file, self.node, self.key = file, node, key

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    @property
    def base(self) -> Path:
        return self.file.parent

    def error(self, problem: str, key: str | None = None) -> BenchError:
        return BenchError(problem, self.file, self.line, self.key if key is None else key)

    def expected(self, what: str) -> BenchError:
        return self.error(f"expected {what}, got {_describe(self.node)}")

    def child(self, node: Node, key: str) -> "_At":
        return _At(self.file, node, f"{self.key}.{key}" if self.key else key)

    def is_null(self) -> bool:
        return isinstance(self.node, ScalarNode) and self.node.tag == _T + "null"

    def mapping(self, known: Iterable[str], what: str = "a mapping") -> "_Map":
        if not isinstance(self.node, MappingNode):
            raise self.expected(what)
        return _Map(self, tuple(known))

    def items(self, what: str = "a list") -> list["_At"]:
        if not isinstance(self.node, SequenceNode):
            raise self.expected(what)
        return [_At(self.file, n, f"{self.key}[{i}]") for i, n in enumerate(self.node.value)]

    def _scalar(self, tags: tuple[str, ...], what: str) -> str:
        if not isinstance(self.node, ScalarNode) or self.node.tag.removeprefix(_T) not in tags:
            raise self.expected(what)
        return self.node.value

    def string(self, what: str = "a string", choices: tuple[str, ...] = (), numbers_as_text: bool = False) -> str:
        """A string; with ``numbers_as_text`` an unquoted number is taken as written (ICCIDs keep leading zeros)."""
        tags = ("str", "int", "float") if numbers_as_text or choices else ("str",)
        if choices:
            what = "one of " + ", ".join(choices)
        value = self._scalar(tags, what)
        if choices and value not in choices:
            raise self.expected(what)
        if not value.strip():
            raise self.expected(f"a non-empty {what.removeprefix('a ')}")
        return value

    def digits(self, what: str, low: int, high: int) -> str:
        value = self.string(f"{what} ({low}..{high} digits)", numbers_as_text=True)
        if not (value.isdigit() and low <= len(value) <= high):
            raise self.error(f"expected {what} of {low}..{high} digits, got {value!r}")
        return value

    def integer(self, low: int | None = None, high: int | None = None, what: str = "an integer") -> int:
        if low is not None and high is not None:
            what = f"an integer {low}..{high}"
        self._scalar(("int",), what)
        value = _constructor.construct_object(self.node)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.expected(what)
        return value

    def seconds(self) -> float:
        self._scalar(("int", "float"), "a positive number of seconds")
        value = float(_constructor.construct_object(self.node))
        if not value > 0 or value == float("inf"):
            raise self.expected("a positive number of seconds")
        return value

    def boolean(self) -> bool:
        self._scalar(("bool",), "true or false")
        return bool(_constructor.construct_object(self.node))

    def path(self) -> Path:
        p = Path(self.string("a path")).expanduser()
        return p if p.is_absolute() else (self.base / p).resolve()


class _Map:
    """A mapping's entries by key; unknown and duplicate keys are errors."""

    def __init__(self, at: _At, known: tuple[str, ...]):
        self.at = at
        self.known = known
        self.entries: dict[str, _At] = {}
        _constructor.flatten_mapping(at.node)
        for knode, vnode in at.node.value:
            stray = at.node.flow_style and isinstance(vnode, ScalarNode) and vnode.tag == _T + "null"
            comma = " (inside {...} a comma ends a value: quote values that contain commas)" if stray else ""
            if not isinstance(knode, ScalarNode) or knode.tag != _T + "str":
                raise BenchError(f"expected a key name, got {_describe(knode)}{comma}", at.file,
                                 knode.start_mark.line + 1, at.key)
            name = knode.value
            if name in self.entries:
                first = self.entries[name].line
                raise at.child(knode, name).error(f"duplicate key (first given on line {first})")
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else comma
                raise at.child(knode, name).error(f"unknown key (expected one of: {', '.join(known)}){hint}")
            self.entries[name] = at.child(vnode, name)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> _At | None:
        """The entry, or None when absent or null."""
        entry = self.entries.get(key)
        return None if entry is None or entry.is_null() else entry

    def req(self, key: str, what: str = "") -> _At:
        entry = self.get(key)
        if entry is None:
            if key in self.entries:
                raise self.entries[key].expected(what or "a value")
            extra = f" ({what})" if what else ""
            raise self.at.error(f"missing key {key!r}{extra}")
        return entry

    def only_one(self, keys: tuple[str, ...], what: str) -> str:
        given = [k for k in keys if k in self.entries]
        if len(given) != 1:
            problem = "give only one of" if given else "missing; expected one of"
            shown = given if len(given) > 1 else keys
            raise self.at.error(f"{problem} {', '.join(shown)} ({what})")
        return given[0]


def _compose(text: str, file: Path) -> Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise BenchError(f"not valid YAML: {exc.problem or exc.context}", file,
                         mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise BenchError(f"not valid YAML: {exc}", file) from None
    if node is None:
        raise BenchError("empty file; expected a bench mapping (name, euicc, ...)", file, 1)
    return node


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read ({exc})", path) from None


# --- bench -------------------------------------------------------------------------------------------

_BENCH_KEYS = ("name", "description", "sgp32_version", "capabilities", "modem", "euicc", "ipa", "eim", "smdp",
               "profiles", "networks", "reset_ladder", "budgets")


class _FileCheck:
    """Files a bench reads (package, CA, networks); checked after the walk when asked to."""

    def __init__(self) -> None:
        self.entries: list[tuple[_At, Path, bool]] = []

    def add(self, at: _At, path: Path, directory: bool = False) -> Path:
        self.entries.append((at, path, directory))
        return path

    def check(self) -> None:
        for at, path, directory in self.entries:
            ok = path.is_dir() if directory else path.is_file()
            if not ok:
                raise at.error(f"{'folder' if directory else 'file'} not found: {path}")


def _bench(at: _At, files: _FileCheck) -> Bench:
    m = at.mapping(_BENCH_KEYS, "a bench mapping (name, euicc, ...)")
    name = m.req("name", "the bench/slot name").string()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise m.req("name").error(f"expected letters, digits, '.', '_' or '-' (it names files and slots), got {name!r}")
    version = m.get("sgp32_version")
    modem = _modem(m.get("modem")) if m.get("modem") else None
    euicc = _euicc(m.req("euicc", "pcsc, modem or virtual access to the eUICC"), modem)
    ipa = _ipa(m.get("ipa")) if m.get("ipa") else Ipa()
    networks = None
    if m.get("networks"):
        n_at = m.req("networks")
        if not (modem and modem.port.virtual):
            raise n_at.error("a network model is for the simulated modem only (modem.port.virtual: true)")
        networks = files.add(n_at, n_at.path())
    bench = Bench(
        name=name,
        description=m.get("description").string() if m.get("description") else "",
        sgp32_version=version.string(choices=SGP32_VERSIONS) if version else "1.2",
        modem=modem,
        euicc=euicc,
        ipa=ipa,
        eim=_server(m.get("eim"), "eim", files) if m.get("eim") else None,
        smdp=_server(m.get("smdp"), "smdp", files) if m.get("smdp") else None,
        profiles=_profiles(m.get("profiles"), files, networks) if m.get("profiles") else Profiles(),
        networks=networks,
        reset_ladder=_ladder(m.get("reset_ladder"), modem) if m.get("reset_ladder") else (),
        budgets=_budgets(m.get("budgets")) if m.get("budgets") else Budgets(),
        source=at.file,
    )
    caps = _capabilities(m.get("capabilities"), bench) if m.get("capabilities") else ()
    return replace(bench, capabilities=caps)


def _modem(at: _At) -> Modem:
    m = at.mapping(("port", "vendor", "baudrate"), "null (no modem) or a mapping with port, vendor, baudrate")
    port = _port(m.req("port", "path, usb, url or virtual: true"))
    vendor, vendor_file = "auto", None
    if m.get("vendor"):
        v_at = m.req("vendor")
        vendor = v_at.string("a vendor profile name, 'auto' or a profile .yaml file")
        if vendor.endswith((".yaml", ".yml")):
            vendor_file = v_at.path()
            vendor = vendor_file.stem
        elif vendor != "auto":
            from ..drivers.at.profiles import profile_names

            known = profile_names()
            if vendor not in known:
                raise v_at.error(f"unknown vendor profile {vendor!r} (expected 'auto', a .yaml file or one of: "
                                 f"{', '.join(known)})")
    baudrate = m.get("baudrate").integer(300, 4_000_000) if m.get("baudrate") else 115200
    return Modem(port=port, vendor=vendor, vendor_file=vendor_file, baudrate=baudrate)


def _port(at: _At) -> ModemPort:
    if isinstance(at.node, ScalarNode) and at.node.tag == _T + "str" and _BARE_TTY.match(at.node.value):
        raise _bare_tty(at, at.node.value)
    m = at.mapping(("path", "usb", "url", "virtual"), "a mapping with one of path, usb, url or virtual: true")
    kind = m.only_one(("path", "usb", "url", "virtual"), "a stable identity of the AT port")
    v = m.req(kind)
    if kind == "path":
        path = v.string("a device path such as /dev/serial/by-path/...")
        if _BARE_TTY.match(path):
            raise _bare_tty(v, path)
        if not path.startswith("/"):
            raise v.error(f"expected an absolute device path such as /dev/serial/by-path/..., got {path!r}")
        return ModemPort(path=path)
    if kind == "usb":
        u = v.mapping(("serial", "interface"), "a mapping with serial (USB iSerial) and interface (number)")
        serial = u.req("serial", "the USB serial number (udev ID_SERIAL_SHORT)").string(numbers_as_text=True)
        iface = u.get("interface").integer(0, 255) if u.get("interface") else None
        return ModemPort(usb_serial=serial, usb_interface=iface)
    if kind == "url":
        url = v.string("a socket:// or rfc2217:// URL")
        parts = urlsplit(url)
        if parts.scheme not in PORT_URL_SCHEMES or not parts.hostname or parts.port is None:
            raise v.error(f"expected socket://HOST:PORT or rfc2217://HOST:PORT, got {url!r}")
        return ModemPort(url=url)
    if not v.boolean():
        raise v.error("virtual: false selects nothing; give path, usb or url for a real modem")
    return ModemPort(virtual=True)


def _bare_tty(at: _At, path: str) -> BenchError:
    return at.error(
        f"{path} is not a stable identity: USB modems re-enumerate on AT+CFUN=1,1, firmware update, eUICC "
        "refresh or a hub power cycle and may come back under another number (or hand the number to another "
        "device); use path: /dev/serial/by-path/... (or /dev/serial/by-id/...), or usb: {serial, interface}")


def _euicc(at: _At, modem: Modem | None) -> EuiccAccess:
    m = at.mapping(("via", "reader", "atr", "apdu_path", "state", "vpcd_port"),
                   "a mapping with via: pcsc | modem | virtual")
    via = m.req("via", "pcsc, modem or virtual").string(choices=EUICC_PATHS)
    allowed = {"pcsc": {"via", "reader", "atr"}, "modem": {"via", "apdu_path"},
               "virtual": {"via", "state", "vpcd_port"}}[via]
    for key, entry in m.entries.items():
        if key not in allowed:
            raise entry.error(f"not used with via: {via} (keys for {via}: {', '.join(sorted(allowed))})")
    if via == "pcsc":
        r = m.req("reader", "the PC/SC reader name (or a unique part of it) or its index")
        if isinstance(r.node, ScalarNode) and r.node.tag == _T + "int":
            reader: str | int = r.integer(0, 255)
        else:
            reader = r.string("a reader name or index")
        atr = None
        if m.get("atr"):
            a = m.req("atr")
            atr = a.string("an ATR in hex").replace(" ", "").upper()
            if not re.fullmatch(r"([0-9A-F]{2}){2,33}", atr):
                raise a.error(f"expected an ATR as hex bytes (2..33), got {a.node.value!r}")
        return EuiccAccess(via="pcsc", reader=reader, atr=atr)
    if via == "modem":
        if modem is None:
            raise m.req("via").error("via: modem needs a modem (the bench has modem: null or none)")
        path = m.get("apdu_path").string(choices=APDU_PATHS) if m.get("apdu_path") else "auto"
        return EuiccAccess(via="modem", apdu_path=path)
    state = m.get("state").path() if m.get("state") else None
    port = m.get("vpcd_port").integer(1, 65535) if m.get("vpcd_port") else DEFAULT_VPCD_PORT
    return EuiccAccess(via="virtual", state=state, vpcd_port=port)


def _ipa(at: _At) -> Ipa:
    m = at.mapping(("mode", "poll_interval_s"), "a mapping with mode (host, device, ipae) and poll_interval_s")
    mode = m.get("mode").string(choices=IPA_MODES) if m.get("mode") else "host"
    poll = m.get("poll_interval_s").seconds() if m.get("poll_interval_s") else 10.0
    return Ipa(mode=mode, poll_interval_s=poll)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _server(at: _At, role: Literal["eim", "smdp"], files: _FileCheck) -> Server:
    m = at.mapping(("bundled", "host", "port", "pki", "url", "ca"),
                   "{bundled: true, host, port, pki} or {url: https://..., ca}")
    bundled = m.get("bundled").boolean() if m.get("bundled") else False
    if bundled:
        for key in ("url", "ca"):
            if key in m:
                raise m.entries[key].error("not used with bundled: true (a bundled server takes host, port, pki)")
        host = m.get("host").string("a loopback address") if m.get("host") else "127.0.0.1"
        if not _is_loopback(host):
            raise m.req("host").error(
                f"expected a loopback address (127.0.0.1, ::1, localhost), got {host!r}: bundled servers use "
                "test keys and no client authentication, so they listen on loopback only; give a lab server by url")
        # 0: any free port, picked when the harness starts the server (what the software eUICC is then given).
        port = m.get("port").integer(0, 65535) if m.get("port") else DEFAULT_SERVER_PORTS[role]
        pki = m.req("pki", "the test PKI folder (generated there when empty)").path()
        if pki.exists() and not pki.is_dir():
            raise m.req("pki").error(f"expected a folder, got a file: {pki}")
        return Server(role=role, bundled=True, host=host, port=port, pki=pki)
    for key in ("host", "port", "pki"):
        if key in m:
            raise m.entries[key].error("only for bundled: true; a lab's own server is given by url")
    u = m.req("url", "https://... of the lab's server, or bundled: true")
    url = u.string("an https:// URL")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise u.error(f"expected an https://HOST[:PORT] URL (ESipa and ES9+ run over TLS), got {url!r}")
    ca = files.add(m.req("ca"), m.req("ca").path()) if m.get("ca") else None
    return Server(role=role, bundled=False, url=url, ca=ca)


def _network_names(path: Path) -> set[str] | None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        return {n["name"] for n in doc["networks"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def _network(at: _At, names: set[str] | None) -> str:
    value = at.string("a network name")
    if names is not None and value not in names:
        raise at.error(f"unknown network {value!r} (the networks file has: {', '.join(sorted(names))})")
    return value


def _profiles(at: _At, files: _FileCheck, networks: Path | None) -> Profiles:
    m = at.mapping(("bootstrap", "operational"), "a mapping with bootstrap and operational")
    names = _network_names(networks) if networks else None
    bootstrap = None
    iccids: dict[str, int] = {}

    def iccid(entry: _At) -> str:
        value = entry.digits("an ICCID", 18, 20)
        if value in iccids:
            raise entry.error(f"ICCID {value} is also given on line {iccids[value]}")
        iccids[value] = entry.line
        return value

    if m.get("bootstrap"):
        b = m.req("bootstrap").mapping(("iccid", "imsi", "network"), "a mapping with iccid, imsi, network")
        bootstrap = BootstrapProfile(
            iccid=iccid(b.req("iccid", "the bootstrap profile's ICCID")),
            imsi=b.get("imsi").digits("an IMSI", 6, 15) if b.get("imsi") else None,
            network=_network(b.req("network"), names) if b.get("network") else None,
        )
    operational: list[OperationalProfile] = []
    seen: dict[str, int] = {}
    for item in m.get("operational").items("a list of profiles") if m.get("operational") else []:
        p = item.mapping(("name", "iccid", "imsi", "apn", "network", "package"),
                         "a mapping with name, imsi, apn (iccid, network, package optional)")
        name_at = p.req("name")
        name = name_at.string()
        if name in seen:
            raise name_at.error(f"duplicate operational profile name (first on line {seen[name]})")
        seen[name] = name_at.line
        operational.append(OperationalProfile(
            name=name,
            iccid=iccid(p.req("iccid")) if p.get("iccid") else None,
            imsi=p.req("imsi", "the profile's IMSI").digits("an IMSI", 6, 15),
            apn=p.req("apn", "the APN the profile attaches with").string(),
            network=_network(p.req("network"), names) if p.get("network") else None,
            package=files.add(p.req("package"), p.req("package").path()) if p.get("package") else None,
        ))
    return Profiles(bootstrap=bootstrap, operational=tuple(operational))


def _ladder(at: _At, modem: Modem | None) -> tuple[ResetStep, ...]:
    steps = []
    for item in at.items("a list of steps ({at: AT+...} or {command: [...], timeout_s})"):
        s = item.mapping(("at", "command", "timeout_s", "name"), "{at: AT command} or {command: argv, timeout_s}")
        kind = s.only_one(("at", "command"), "an AT command to the modem or a host command")
        timeout = s.get("timeout_s").seconds() if s.get("timeout_s") else 60.0
        name = s.get("name").string() if s.get("name") else ""
        v = s.req(kind)
        if kind == "at":
            cmd = v.string("an AT command such as AT+CFUN=1,1")
            if not cmd.upper().startswith("AT"):
                raise v.error(f"expected an AT command (starting with AT), got {cmd!r}")
            if modem is None:
                raise v.error("an AT step needs a modem (the bench has none)")
            steps.append(ResetStep(kind="at", at=cmd, timeout_s=timeout, name=name))
            continue
        if isinstance(v.node, SequenceNode):
            argv = tuple(x.string("a command-line argument", numbers_as_text=True) for x in v.items())
        else:
            text = v.string("an argv list or a command string")
            try:
                argv = tuple(shlex.split(text))
            except ValueError as exc:
                raise v.error(f"cannot split the command ({exc})") from None
        if not argv:
            raise v.expected("a non-empty command")
        steps.append(ResetStep(kind="command", argv=argv, timeout_s=timeout, name=name))
    return tuple(steps)


def _budgets(at: _At) -> Budgets:
    m = at.mapping(BUDGET_NAMES, "a mapping of budget name to seconds")
    return Budgets(**{k: m.req(k).seconds() for k in BUDGET_NAMES if m.get(k)})


def _capabilities(at: _At, bench: Bench) -> tuple[str, ...]:
    tags: list[str] = []
    derived = {"ipa": bench.ipa.mode, "sgp32": bench.sgp32_version, "euicc": bench.euicc.via}
    for item in at.items("a list of capability tags"):
        tag = item.string("a capability tag")
        if not _TAG.fullmatch(tag):
            raise item.error(f"expected a lower-case tag such as fallback or rat=catm, got {tag!r}")
        if tag in tags:
            raise item.error(f"duplicate capability {tag!r}")
        key, eq, value = tag.partition("=")
        if eq and key in derived and value != derived[key]:
            raise item.error(f"{tag!r} contradicts the bench ({key}={derived[key]}); the tag is derived, drop it")
        if tag == "virtual":
            real = [what for what, is_real in (
                ("euicc.via is " + bench.euicc.via, bench.euicc.via == "pcsc"),
                ("the modem is real", bool(bench.modem and not bench.modem.port.virtual)),
            ) if is_real]
            if real:
                raise item.error(f"the virtual tag says everything is simulated, but {' and '.join(real)}")
        tags.append(tag)
    return tuple(tags)


# --- entry points ------------------------------------------------------------------------------------


def parse_bench(text: str, file: str | Path = "<bench>", check_files: bool = True) -> Bench:
    """Validate bench YAML ``text``; relative paths resolve against ``file``'s folder."""
    path = Path(file)
    files = _FileCheck()
    bench = _bench(_At(path, _compose(text, path), ""), files)
    if check_files:
        files.check()
    return bench


def load_bench(path: str | Path, check_files: bool = True) -> Bench:
    """Load and validate a bench file. ``check_files`` also requires the package, CA and networks files."""
    p = Path(path).expanduser().absolute()
    return parse_bench(_read(p), p, check_files)


def load_rack(path: str | Path, check_files: bool = True) -> Rack:
    """Load a rack: ``benches`` lists bench files (relative to the rack) or inline benches; slot names are unique."""
    p = Path(path).expanduser().absolute()
    root = _At(p, _compose(_read(p), p), "")
    m = root.mapping(("name", "benches"), "a rack mapping with benches (list of bench files or inline benches)")
    benches: list[Bench] = []
    lines: dict[str, int] = {}
    listeners: dict[str, str] = {}
    for item in m.req("benches", "a list of bench files or inline benches").items("a list of benches"):
        if isinstance(item.node, MappingNode):
            files = _FileCheck()
            bench = _bench(item, files)
            if check_files:
                files.check()
        else:
            bench = load_bench(item.path(), check_files)
        if bench.name in lines:
            raise item.error(f"duplicate slot {bench.name!r} (first on line {lines[bench.name]}); "
                             "bench names are slot names and must be unique")
        lines[bench.name] = item.line
        for what, owner in _listeners(bench).items():
            if what in listeners:
                raise item.error(f"{owner} uses {what}, as slot {listeners[what]!r} does; slots run at the same "
                                 "time on one host, so give each its own ports")
            listeners[what] = f"{bench.name}: {owner}"
        benches.append(bench)
    name = m.get("name").string() if m.get("name") else p.stem
    return Rack(benches=tuple(benches), name=name, source=p)


def _listeners(bench: Bench) -> dict[str, str]:
    """Host resources a bench's processes bind: bundled server ports and the vpcd port."""
    out = {}
    for server in (bench.eim, bench.smdp):
        if server and server.bundled and server.port:
            out[f"port {server.port}"] = f"{server.role} (bundled)"
    if bench.euicc.via == "virtual":
        out[f"vpcd port {bench.euicc.vpcd_port}"] = "euicc.vpcd_port"
    return out


def iter_bench_files(folder: str | Path) -> Iterator[Path]:
    """Bench files in ``folder`` (racks, which have a top-level ``benches`` key, are left out)."""
    for f in sorted(Path(folder).glob("*.yaml")):
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            yield f
            continue
        if not (isinstance(doc, dict) and "benches" in doc):
            yield f
