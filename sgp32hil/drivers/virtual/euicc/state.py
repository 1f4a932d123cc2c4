"""Non-volatile state of the software eUICC and its atomic file store.

Everything an eUICC keeps across power cycles (SGP.22 §2.4 ISD-R/ISD-P/ECASD contents, SGP.32 §2.4 eIM
configuration and counters) is one :class:`EuiccState`, persisted as one JSON file that is replaced
atomically (write a temporary file, fsync, rename over the old one, fsync the folder). A kill at any
moment leaves either the previous or the new state on disk, never a mixture. Volatile session data
(an ongoing download, logical channels) deliberately lives elsewhere and is lost on reset, as on a card.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = "euicc.json"
FORMAT = "sgp32hil-euicc-state"
VERSION = 1


class StateError(ValueError):
    """The state file is missing, unreadable or not a state file of this version."""


@dataclass
class NotificationConfig:
    """NotificationConfigurationInformation (SGP.22 §2.4.4): which events notify which SM-DP+."""

    events: list[str]
    address: str


@dataclass
class Profile:
    """One ISD-P and its profile (SGP.22 §2.4.4 ProfileInfo, SGP.32 §2.4.2 fallback attribute)."""

    iccid: str
    isdp_aid: bytes
    state: str = "disabled"
    nickname: str = ""
    service_provider_name: str = ""
    profile_name: str = ""
    profile_class: str = "operational"
    icon_type: int | None = None
    icon: bytes = b""
    owner_mcc_mnc: bytes = b""
    owner_gid1: bytes = b""
    owner_gid2: bytes = b""
    policy_rules: list[str] = field(default_factory=list)
    notification_config: list[NotificationConfig] = field(default_factory=list)
    fallback_attribute: bool = False
    imsi: str = ""
    apn: str = ""
    package: bytes = b""
    smdp_address: str = ""
    preloaded: bool = False
    fallback_allowed: bool | None = None


@dataclass
class Notification:
    """A pending notification (SGP.22 §2.4.5 / SGP.32 §2.9): the signed DER exactly as it will be sent."""

    seq_number: int
    event: str
    address: str
    iccid: str
    der: bytes


@dataclass
class EimConfig:
    """EimConfigurationData as stored in the eUICC (SGP.32 §2.4.x): one associated eIM."""

    eim_id: str
    eim_fqdn: str
    eim_id_type: int | None = None
    counter_value: int = 0
    association_token: int | None = None
    eim_public_key: bytes = b""
    eim_certificate: bytes = b""
    trusted_tls_key: bytes = b""
    supported_protocols: bytes = b""
    euicc_ci_pkid: bytes = b""
    indirect_profile_download: bool = False


@dataclass
class RatOperator:
    """OperatorId of a RAT rule (SGP.22 §2.9.2.2): MCC/MNC as 3 bytes (digit 'E' = wildcard), GID1/GID2."""

    mcc_mnc: bytes
    gid1: bytes = b""
    gid2: bytes = b""


@dataclass
class RatRule:
    """ProfilePolicyAuthorisationRule (SGP.22 §2.9.2.2): PPRs allowed for the listed operators."""

    pprs: list[str]
    allowed_operators: list[RatOperator] = field(default_factory=list)
    consent_required: bool = False


@dataclass
class PackageResult:
    """A stored EuiccPackageResult (SGP.32 §2.11) awaiting the eIM's acknowledgement."""

    seq_number: int
    eim_id: str
    der: bytes


@dataclass
class RollbackContext:
    """What ES10b.ProfileRollback (SGP.32 v1.2 §5.9.x, BF58) needs after an enable PSMO with rollbackFlag:
    the profile to go back to, the profile that package enabled, and the signed data of that package's
    result (its euiccResult list is repeated, with rollbackResult appended, in the rollback's result)."""

    previous_iccid: str
    enabled_iccid: str
    seq_number: int
    result_data: bytes
    association_token: int | None = None


@dataclass
class PendingInstall:
    """A Bound Profile Package load in progress (SGP.22 §5.7.6): what the eUICC needs to report
    installFailedDueToInterruption if the load never completes (reset, power loss, a new session)."""

    transaction_id: bytes
    smdp_oid: str
    address: str
    bpp_command: int
    iccid: str = ""


@dataclass
class EuiccState:
    """The whole NVM of one software eUICC.

    Notifications and stored eUICC Package Results share one sequence-number space (see
    :func:`.packages.allocate_seq`), so RemoveNotificationFromList / EimAcknowledgements name either
    without ambiguity. ``download_otpk``/``download_otsk`` (uncompressed point, PKCS#8 DER) are the one-time key pair of the
    last PrepareDownload, kept across resets so that a retried download can reuse them (SGP.22 §3.1.3.2
    bppEuiccOtpk); ``pending_install`` marks a BPP load in progress (never a profile); see :mod:`.download`.
    """

    eid: str
    euicc_key_pem: bytes
    euicc_cert: bytes
    eum_cert: bytes
    ci_certs: list[bytes]
    curve: str = "nist"
    profiles: list[Profile] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    eims: list[EimConfig] = field(default_factory=list)
    package_results: list[PackageResult] = field(default_factory=list)
    default_dp_address: str = ""
    root_ds_address: str = "lpa.ds.gsma.com"
    next_notification_seq: int = 1
    next_result_seq: int = 1
    next_isdp: int = 0x10
    next_association_token: int = 1
    immediate_enable: bool = False
    default_smdp_for_immediate: str = ""
    immediate_enable_smdp_oid: str = ""
    rollback: RollbackContext | None = None
    fallback_active_from: str = ""
    extra_certs: dict[str, bytes] = field(default_factory=dict)
    rat: list[RatRule] = field(default_factory=list)
    download_otpk: bytes = b""
    download_otsk: bytes = b""
    pending_install: PendingInstall | None = None

    def profile(self, iccid: str) -> Profile | None:
        return next((p for p in self.profiles if p.iccid == iccid), None)

    def profile_by_aid(self, aid: bytes) -> Profile | None:
        return next((p for p in self.profiles if p.isdp_aid == aid), None)

    def enabled_profile(self) -> Profile | None:
        return next((p for p in self.profiles if p.state == "enabled"), None)

    def fallback_profile(self) -> Profile | None:
        return next((p for p in self.profiles if p.fallback_attribute), None)

    def eim(self, eim_id: str) -> EimConfig | None:
        return next((e for e in self.eims if e.eim_id == eim_id), None)

    def allocate_isdp_aid(self) -> bytes:
        """ISD-P AIDs follow the SGP.02/SGP.22 pattern A0000005591010FFFFFFFF89 + 3-byte counter + 00."""
        aid = bytes.fromhex("A0000005591010FFFFFFFF89") + self.next_isdp.to_bytes(3, "big") + b"\x00"
        self.next_isdp += 1
        return aid


def _to_jsonable(value):
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if dataclasses.is_dataclass(value):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    return value


def _from_jsonable(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is bytes:
        if not (isinstance(value, dict) and isinstance(value.get("hex"), str)):
            raise StateError(f"{where}: expected {{'hex': ...}}, got {value!r:.60}")
        try:
            return bytes.fromhex(value["hex"])
        except ValueError as exc:
            raise StateError(f"{where}: invalid hex") from exc
    if origin is list:
        if not isinstance(value, list):
            raise StateError(f"{where}: expected a list")
        return [_from_jsonable(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise StateError(f"{where}: expected an object")
        return {k: _from_jsonable(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_jsonable(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise StateError(f"{where}: expected an object")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _from_jsonable(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise StateError(f"{where}: missing key {f.name!r}")
        return tp(**kwargs)
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise StateError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def dumps(state: EuiccState) -> bytes:
    doc = {"format": FORMAT, "version": VERSION, "state": _to_jsonable(state)}
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def loads(data: bytes, source: str = "state") -> EuiccState:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateError(f"{source}: not a software eUICC state file (format {FORMAT!r} expected)")
    if doc.get("version") != VERSION:
        raise StateError(f"{source}: state version {doc.get('version')!r}, this tool reads version {VERSION}")
    return _from_jsonable(EuiccState, doc.get("state"), source)


class StateStore:
    """A state directory holding ``euicc.json``; :meth:`save` is atomic and durable."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE

    @contextlib.contextmanager
    def lock(self):
        """Hold the directory exclusively (one card per state), then drop temp files of killed writers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StateError(f"{self.directory}: in use by another process (another software eUICC?)") from exc
            for stale in self.directory.glob(".euicc-*.tmp"):
                stale.unlink(missing_ok=True)
            yield self
        finally:
            os.close(fd)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> EuiccState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError as exc:
            raise StateError(f"{self.path}: no eUICC state here (create one with a factory reset)") from exc
        return loads(data, str(self.path))

    def save(self, state: EuiccState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = dumps(state)
        fd, tmp = tempfile.mkstemp(prefix=".euicc-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
