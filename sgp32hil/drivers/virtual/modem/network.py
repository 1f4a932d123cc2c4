"""Network model of the simulated modem: which EPS networks are in coverage and whom they accept.

Loaded from YAML (``fixtures/networks/*.yaml``).  The enabled profile's IMSI decides the outcome of an
attach (3GPP TS 24.301 §5.5.1): the first network in coverage whose ``accept`` list matches registers
the device (home when the IMSI's MCC+MNC equals the PLMN, roaming otherwise); a network in coverage
that does not accept it, or that has a forced reject, denies the attach with its EMM cause (TS 24.301
§9.9.3.9: #7 EPS services not allowed, #11 PLMN not allowed, #15 no suitable cells in tracking area).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTS = (7, 9)  # 27.007 §7.3 <AcT>: 7 E-UTRAN (LTE-M), 9 E-UTRAN NB-S1 (NB-IoT)


class NetworkModelError(ValueError):
    """The network file is unreadable or has a key with a wrong value (message names file and key)."""


@dataclass(frozen=True)
class ImsiRange:
    first: str
    last: str

    def contains(self, imsi: str) -> bool:
        return len(imsi) == len(self.first) and self.first <= imsi <= self.last


@dataclass(frozen=True)
class Signal:
    """Serving-cell quality in 27.007 §8.5/§8.69 units: rssi 0..31, rsrq 0..34, rsrp 0..97."""

    rssi: int = 20
    rsrq: int = 20
    rsrp: int = 45


@dataclass
class Network:
    name: str
    plmn: str
    act: int
    long_name: str
    short_name: str
    coverage: bool = True
    accept_prefixes: tuple[str, ...] = ()
    accept_ranges: tuple[ImsiRange, ...] = ()
    reject_cause: int = 15
    force_reject: int | None = None
    attach_delay_s: float = 0.3
    tac: str = "0001"
    ci: str = "00000001"
    signal: Signal = field(default_factory=Signal)
    apns: dict[str, str] = field(default_factory=dict)

    def accepts(self, imsi: str) -> bool:
        return any(imsi.startswith(p) for p in self.accept_prefixes) or any(r.contains(imsi) for r in self.accept_ranges)

    def pool(self, apn: str) -> ipaddress.IPv4Network | None:
        cidr = self.apns.get(apn) or self.apns.get(apn.lower()) or self.apns.get("*")
        return ipaddress.IPv4Network(cidr) if cidr else None


@dataclass(frozen=True)
class SubscriberEntry:
    iccid: str
    imsi: str
    apn: str = ""


@dataclass(frozen=True)
class AttachOutcome:
    """Where an attach ends: ``network`` registers (stat 1 home / 5 roaming) unless ``reject_cause`` is set
    (stat 3, denied); no network at all means no coverage (stat 2, searching)."""

    network: Network | None
    stat: int
    reject_cause: int | None = None


class NetworkModel:
    """The networks around the device (mutable: coverage and rejects change at run time) and the ICCID table."""

    def __init__(self, networks: list[Network], profiles: list[SubscriberEntry] | None = None,
                 search_timeout_s: float = 10.0, source: str = "<model>"):
        names = [n.name for n in networks]
        if len(set(names)) != len(names):
            raise NetworkModelError(f"{source}: networks: duplicate names {names}")
        self.networks = networks
        self.profiles = {p.iccid: p for p in profiles or []}
        self.search_timeout_s = search_timeout_s
        self.source = source
        self._leases: dict[tuple[str, str], dict[str, ipaddress.IPv4Address]] = {}

    def network(self, name: str) -> Network:
        for n in self.networks:
            if n.name == name:
                return n
        raise KeyError(f"no network {name!r} (known: {', '.join(x.name for x in self.networks)})")

    def by_plmn(self, plmn: str) -> Network | None:
        return next((n for n in self.networks if n.plmn == plmn), None)

    def in_coverage(self) -> list[Network]:
        return [n for n in self.networks if n.coverage]

    def subscriber(self, iccid: str) -> SubscriberEntry | None:
        return self.profiles.get(iccid.upper().rstrip("F"))

    def attach(self, imsi: str | None, plmn: str | None = None) -> AttachOutcome:
        """Outcome of an attach with ``imsi``; ``plmn`` restricts it to one network (+COPS=1 manual mode)."""
        candidates = [n for n in self.in_coverage() if plmn is None or n.plmn == plmn]
        if not candidates:
            return AttachOutcome(None, 2)
        if imsi is None:
            return AttachOutcome(candidates[0], 3, 3)  # EMM #3 illegal UE: no usable subscription
        for n in candidates:
            if n.accepts(imsi):
                if n.force_reject is not None:
                    return AttachOutcome(n, 3, n.force_reject)
                return AttachOutcome(n, 1 if imsi.startswith(n.plmn) else 5)
        forced = next((n for n in candidates if n.force_reject is not None), None)
        n = forced or candidates[0]
        return AttachOutcome(n, 3, n.force_reject if forced else n.reject_cause)

    def address(self, network: Network, apn: str, imsi: str) -> str | None:
        """A stable IPv4 address for ``imsi`` from the network's pool for ``apn`` (first host upwards)."""
        pool = network.pool(apn)
        if pool is None:
            return None
        leases = self._leases.setdefault((network.name, str(pool)), {})
        if imsi not in leases:
            hosts = pool.hosts()
            used = set(leases.values())
            next(hosts)  # the first host is the gateway
            leases[imsi] = next(h for h in hosts if h not in used)
        return str(leases[imsi])

    def to_dict(self) -> dict[str, Any]:
        return {"networks": [{"name": n.name, "plmn": n.plmn, "act": n.act, "coverage": n.coverage,
                              "force_reject": n.force_reject, "reject_cause": n.reject_cause} for n in self.networks]}


def _req(entry: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in entry:
        raise NetworkModelError(f"{where}.{key}: missing")
    return _typed(entry[key], f"{where}.{key}", kind)


def _typed(value: Any, where: str, kind: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and kind is not bool and (kind is int or (isinstance(kind, tuple) and bool not in kind)):
        raise NetworkModelError(f"{where}: expected {kind}, got {value!r}")
    if not isinstance(value, kind):
        raise NetworkModelError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


_NETWORK_KEYS = {"name", "long_name", "short_name", "plmn", "act", "coverage", "accept", "reject_cause",
                 "force_reject", "attach_delay_s", "tac", "ci", "signal", "apns"}


def _network(entry: Any, where: str) -> Network:
    if not isinstance(entry, dict):
        raise NetworkModelError(f"{where}: expected a mapping")
    unknown = set(entry) - _NETWORK_KEYS
    if unknown:
        raise NetworkModelError(f"{where}.{sorted(unknown)[0]}: unknown key")
    name = _req(entry, "name", where, str)
    plmn = str(_req(entry, "plmn", where, (str, int)))
    if not (plmn.isdigit() and len(plmn) in (5, 6)):
        raise NetworkModelError(f"{where}.plmn: expected 5 or 6 digits (MCC+MNC), got {plmn!r}")
    act = _req(entry, "act", where, int)
    if act not in ACTS:
        raise NetworkModelError(f"{where}.act: expected one of {ACTS}, got {act}")
    prefixes: list[str] = []
    ranges: list[ImsiRange] = []
    for i, item in enumerate(entry.get("accept", [])):
        if isinstance(item, (str, int)) and not isinstance(item, bool) and str(item).isdigit():
            prefixes.append(str(item))
        elif isinstance(item, dict) and set(item) == {"from", "to"}:
            lo, hi = str(item["from"]), str(item["to"])
            if not (lo.isdigit() and hi.isdigit() and len(lo) == len(hi) and lo <= hi):
                raise NetworkModelError(f"{where}.accept[{i}]: from/to must be equal-length digit strings, from <= to")
            ranges.append(ImsiRange(lo, hi))
        else:
            raise NetworkModelError(f"{where}.accept[{i}]: expected an IMSI prefix or {{from, to}}, got {item!r}")
    sig = entry.get("signal", {})
    if not isinstance(sig, dict) or set(sig) - {"rssi", "rsrq", "rsrp"}:
        raise NetworkModelError(f"{where}.signal: expected a mapping with rssi, rsrq, rsrp")
    signal = Signal(**{k: _typed(v, f"{where}.signal.{k}", int) for k, v in sig.items()})
    apns = entry.get("apns", {})
    if not isinstance(apns, dict):
        raise NetworkModelError(f"{where}.apns: expected a mapping APN -> IPv4 CIDR")
    for apn, cidr in apns.items():
        try:
            ipaddress.IPv4Network(str(cidr))
        except ValueError as exc:
            raise NetworkModelError(f"{where}.apns.{apn}: {exc}") from None
    force = entry.get("force_reject")
    tac = str(entry.get("tac", "0001"))
    ci = str(entry.get("ci", "00000001"))
    for key, value, width in (("tac", tac, 4), ("ci", ci, 8)):
        try:
            int(value, 16)
        except ValueError:
            raise NetworkModelError(f"{where}.{key}: expected hex digits, got {value!r}") from None
        if len(value) > width:
            raise NetworkModelError(f"{where}.{key}: at most {width} hex digits, got {value!r}")
    delay = _typed(entry.get("attach_delay_s", 0.3), f"{where}.attach_delay_s", (int, float))
    if delay < 0:
        raise NetworkModelError(f"{where}.attach_delay_s: must be >= 0")
    return Network(
        name=name, plmn=plmn, act=act,
        long_name=str(entry.get("long_name", name)), short_name=str(entry.get("short_name", name[:8])),
        coverage=_typed(entry.get("coverage", True), f"{where}.coverage", bool),
        accept_prefixes=tuple(prefixes), accept_ranges=tuple(ranges),
        reject_cause=_typed(entry.get("reject_cause", 15), f"{where}.reject_cause", int),
        force_reject=None if force is None else _typed(force, f"{where}.force_reject", int),
        attach_delay_s=float(delay), tac=tac.upper(), ci=ci.upper(), signal=signal,
        apns={str(k): str(v) for k, v in apns.items()},
    )


def model_from_mapping(data: Any, source: str = "<mapping>") -> NetworkModel:
    if not isinstance(data, dict):
        raise NetworkModelError(f"{source}: expected a mapping with 'networks'")
    unknown = set(data) - {"networks", "profiles", "search_timeout_s"}
    if unknown:
        raise NetworkModelError(f"{source}: {sorted(unknown)[0]}: unknown key")
    raw = data.get("networks")
    if not isinstance(raw, list) or not raw:
        raise NetworkModelError(f"{source}: networks: expected a non-empty list")
    networks = [_network(e, f"{source}: networks[{i}]") for i, e in enumerate(raw)]
    profiles = []
    for i, e in enumerate(data.get("profiles") or []):
        where = f"{source}: profiles[{i}]"
        if not isinstance(e, dict) or set(e) - {"iccid", "imsi", "apn"}:
            raise NetworkModelError(f"{where}: expected a mapping with iccid, imsi, apn")
        iccid, imsi = str(_req(e, "iccid", where, (str, int))), str(_req(e, "imsi", where, (str, int)))
        if not (iccid.isdigit() and 18 <= len(iccid) <= 20):
            raise NetworkModelError(f"{where}.iccid: expected 18..20 digits, got {iccid!r}")
        if not (imsi.isdigit() and 6 <= len(imsi) <= 15):
            raise NetworkModelError(f"{where}.imsi: expected 6..15 digits, got {imsi!r}")
        profiles.append(SubscriberEntry(iccid, imsi, str(e.get("apn", ""))))
    timeout = _typed(data.get("search_timeout_s", 10.0), f"{source}: search_timeout_s", (int, float))
    return NetworkModel(networks, profiles, float(timeout), source)


def load_networks(path: str | Path) -> NetworkModel:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NetworkModelError(f"{p}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise NetworkModelError(f"{p}: invalid YAML: {exc}") from None
    return model_from_mapping(data, str(p))
