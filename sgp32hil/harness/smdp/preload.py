"""Pre-load download orders from YAML.

The file is a list (or a mapping with an ``orders`` list) of::

    - matching_id: TEST-1            # required
      profile: path/to/upp.der       # a package file (relative to the YAML), or
      profile: {make: {iccid: "...", imsi: "...", apn: "...", name: "..."}}
      eid: "8904..."                 # optional: order bound to this EID
      confirmation_code: "1234"      # optional
      fallback: true                 # optional: SGP.32 fallbackAllowed in the metadata
      expires: 2030-01-01T00:00:00Z  # optional: ISO 8601 or Unix seconds
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import yaml

from ..saip import make_profile, read_profile
from .store import SmdpStore

__all__ = ["PreloadError", "load_preload"]

_KEYS = {"matching_id", "profile", "eid", "confirmation_code", "fallback", "expires"}
_MAKE_KEYS = {"iccid", "imsi", "apn", "name"}


class PreloadError(ValueError):
    """A pre-load file entry is invalid; the message names the entry."""


def _expires(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, _dt.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PreloadError(f"{where}.expires: not an ISO 8601 time: {value!r}") from None
    else:
        raise PreloadError(f"{where}.expires: expected a time, got {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return when.timestamp()


def load_preload(store: SmdpStore, path: str | Path) -> list[str]:
    """Add the orders of ``path`` to ``store`` (existing matchingIds are kept); returns the added ones."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("orders")
    if not isinstance(data, list):
        raise PreloadError(f"{path}: expected a list of orders")
    added = []
    for index, entry in enumerate(data):
        where = f"{path}[{index}]"
        if not isinstance(entry, dict) or "matching_id" not in entry or "profile" not in entry:
            raise PreloadError(f"{where}: need a mapping with matching_id and profile")
        unknown = set(entry) - _KEYS
        if unknown:
            raise PreloadError(f"{where}: unknown keys {sorted(unknown)}")
        matching_id = str(entry["matching_id"])
        if store.order(matching_id) is not None:
            continue
        profile = entry["profile"]
        if isinstance(profile, str):
            package = (path.parent / profile).read_bytes()
            name = None
        elif isinstance(profile, dict) and set(profile) == {"make"} and isinstance(profile["make"], dict):
            make = profile["make"]
            if set(make) - _MAKE_KEYS or not {"iccid", "imsi"} <= set(make):
                raise PreloadError(f"{where}.profile.make: need iccid and imsi, may have apn and name")
            name = make.get("name")
            kwargs = {k: str(v) for k, v in make.items()}
            package = make_profile(**kwargs)
        else:
            raise PreloadError(f"{where}.profile: a file name or {{make: {{...}}}}")
        summary = read_profile(package)
        store.add_order(
            matching_id,
            iccid=summary.iccid,
            package=package,
            imsi=summary.imsi,
            name=name or summary.name or "sgp32-hil test profile",
            eid=str(entry["eid"]) if entry.get("eid") else None,
            confirmation_code=str(entry["confirmation_code"]) if entry.get("confirmation_code") else None,
            fallback=bool(entry.get("fallback", False)),
            expires=_expires(entry.get("expires"), where),
        )
        added.append(matching_id)
    return added
