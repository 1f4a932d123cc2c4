"""asn1tools DER codec over the project's ASN.1 modules (see package docstring)."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import asn1tools
from asn1tools.codecs import ber as _asn1_ber
from asn1tools.codecs import compiler as _asn1_compiler
from asn1tools.codecs import der as _asn1_der

MODULE_DIR = Path(__file__).resolve().parent
MODULE_FILES = (
    "PKIX1Explicit88.asn",
    "PKIX1Implicit88.asn",
    "PEDefinitions.asn",
    "RSPDefinitions.asn",
    "SGP32Definitions.asn",
)
# Bump when the compile step changes (e.g. the tagging fix below) to invalidate caches.
_COMPILE_REVISION = "2"


class Asn1Error(ValueError):
    """An ASN.1 value could not be encoded or decoded; the message names the type."""


def _decode_object_identifier(data, offset, end_offset):
    """X.690 8.19.4 with first arc 2 allowing a second arc >= 40 (asn1tools issue #194:
    SGP.26 test SM-DP+ OIDs such as 2.999.10 decoded as 26.39.10)."""
    if offset >= end_offset:
        raise _asn1_ber.DecodeError("empty OBJECT IDENTIFIER", offset=offset)
    first, offset = _asn1_ber.decode_object_identifier_subidentifier(data, offset)
    arcs = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    while offset < end_offset:
        arc, offset = _asn1_ber.decode_object_identifier_subidentifier(data, offset)
        arcs.append(arc)
    return ".".join(str(arc) for arc in arcs)


_asn1_ber.decode_object_identifier = _decode_object_identifier


def _decode_sequence_of(self, data, offset, length):
    """DER SEQUENCE OF / SET OF content with the element check asn1tools' BER codec has.

    asn1tools 0.169's DER ``ArrayType`` loops forever, allocating without bound, when an element has an
    unexpected tag (eerimoq/asn1tools issue #180): seven bytes such as AddInitialEimRequest
    ``BF5704A0020400`` exhaust the host's memory. Every DER peer (APDU, ESipa, ES9+ blobs) reaches this.
    """
    decoded = []
    start = offset
    while offset - start < length:
        element, offset = self.element_type.decode(data, offset)
        _asn1_ber.check_decode_error(self.element_type, element, data, offset)
        decoded.append(element)
    return decoded, offset


_asn1_der.ArrayType.decode_content = _decode_sequence_of

_lock = threading.Lock()
_spec = None


def _references_tagged_type(compiler, type_name: str, module_name: str) -> bool:
    seen = set()
    while (type_name, module_name) not in seen:
        seen.add((type_name, module_name))
        try:
            descriptor, module_name = compiler.lookup_type_descriptor(type_name, module_name)
        except Exception:
            return False
        if "tag" in descriptor:
            return True
        type_name = descriptor["type"]
    return False


def _fixed_pre_process_tags_type(original):
    """X.680 31.2.7: in an IMPLICIT/AUTOMATIC module, ``[n] T`` is explicit only when
    T is an *untagged* CHOICE. asn1tools makes it explicit for every CHOICE, so
    ``authenticateServerResponse [56] AuthenticateServerResponse`` (itself ``[56] CHOICE``)
    would be encoded 'BF38 .. BF38 ..' instead of a single 'BF38'."""

    def pre_process_tags_type(self, type_descriptor, module_tags, module_name):
        tag = type_descriptor.get("tag")
        if (
            tag is not None
            and "kind" not in tag
            and module_tags != "EXPLICIT"
            and self.resolve_type_name(type_descriptor["type"], module_name) == "CHOICE"
            and _references_tagged_type(self, type_descriptor["type"], module_name)
        ):
            tag["kind"] = "IMPLICIT"
        return original(self, type_descriptor, module_tags, module_name)

    return pre_process_tags_type


def _compile():
    """(compiled DER specification, parsed module dictionary) of the project's modules."""
    parsed = asn1tools.parse_files([str(MODULE_DIR / f) for f in MODULE_FILES])
    original = _asn1_compiler.Compiler.pre_process_tags_type
    _asn1_compiler.Compiler.pre_process_tags_type = _fixed_pre_process_tags_type(original)
    try:
        return asn1tools.compile_dict(copy.deepcopy(parsed), "der"), parsed
    finally:
        _asn1_compiler.Compiler.pre_process_tags_type = original


def _cache_key() -> str:
    digest = hashlib.sha256()
    digest.update(f"{_COMPILE_REVISION}|{asn1tools.__version__}|{sys.version_info[:2]}".encode())
    for name in MODULE_FILES:
        digest.update(name.encode())
        digest.update((MODULE_DIR / name).read_bytes())
    return digest.hexdigest()[:32]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sgp32hil"


def _load_cached(path: Path):
    try:
        st = path.stat()
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            return None
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception:
        return None


def _store_cached(path: Path, spec) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".asn1-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(spec, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except Exception:
        pass


def _compiled() -> tuple:
    global _spec
    if _spec is None:
        with _lock:
            if _spec is None:
                path = _cache_dir() / f"asn1-{_cache_key()}.pickle"
                cached = _load_cached(path)
                if not (isinstance(cached, tuple) and len(cached) == 2):
                    cached = _compile()
                    _store_cached(path, cached)
                _spec = cached
    return _spec


def specification():
    """The compiled asn1tools specification (compiled once, cached on disk)."""
    return _compiled()[0]


def parsed_modules() -> dict:
    """The parsed module dictionary (``asn1tools.parse_files`` form: named numbers, named bits, members),
    cached with the compiled specification. Callers must not modify it."""
    return _compiled()[1]


def _type(type_name: str):
    try:
        return specification().types[type_name]
    except KeyError:
        raise Asn1Error(f"unknown ASN.1 type {type_name!r}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    if not isinstance(exc, asn1tools.Error):
        text = f"{exc.__class__.__name__}: {text}"
    return text


def encode(type_name: str, value: Any, *, check_constraints: bool = True) -> bytes:
    """DER-encode ``value`` (asn1tools Python form) as ``type_name``."""
    _type(type_name)
    try:
        return specification().encode(type_name, value, check_types=True,
                                      check_constraints=check_constraints)
    except Exception as exc:
        raise Asn1Error(f"cannot encode {type_name}: {_reason(exc)}") from None


def decode(type_name: str, der: bytes, *, check_constraints: bool = False) -> Any:
    """Decode exactly one ``type_name`` from ``der``; trailing bytes are an error."""
    _type(type_name)
    if not isinstance(der, (bytes, bytearray, memoryview)):
        raise Asn1Error(f"cannot decode {type_name}: expected bytes, got {type(der).__name__}")
    data = bytes(der)
    if not data:
        raise Asn1Error(f"cannot decode {type_name}: no data")
    try:
        value, length = specification().decode_with_length(
            type_name, data, check_constraints=check_constraints)
    except Exception as exc:
        raise Asn1Error(f"cannot decode {type_name}: {_reason(exc)}") from None
    if length != len(data):
        raise Asn1Error(
            f"cannot decode {type_name}: {len(data) - length} unexpected byte(s) after the "
            f"{length}-byte value"
        )
    return value


def tag_of(type_name: str) -> bytes:
    """The outermost tag of ``type_name`` as encoded (e.g. b'\\xbf\\x38' for AuthenticateServerRequest)."""
    tag = getattr(_type(type_name).type, "tag", None)
    if not tag:
        raise Asn1Error(f"{type_name} has no tag of its own (it is an untagged CHOICE or open type)")
    return bytes(tag)


def type_names() -> list[str]:
    """All type names that :func:`encode`/:func:`decode` accept."""
    return sorted(specification().types)
