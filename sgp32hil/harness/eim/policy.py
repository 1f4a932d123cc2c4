"""Profile selection policy (YAML): which operational profile to download or enable from what the device
reports in ESipa.GetEimPackage (SGP.32 v1.2 §5.14.3: rPLMN, stateChangeCause) and what the eIM saw.

```yaml
rules:
  - when: {mcc: "001"}                       # rPLMN MCC (3GPP TS 24.008 coding); also mnc, country, rat,
    download: {activation_code: "LPA:1$..."}  # state_change_cause, failed_attempts_gte / _lt
    indirect: false
    max_attempts: 2                            # stop choosing this rule after 2 failed orders (default 2)
  - when: {failed_attempts_gte: 2}
    enable: {iccid: "8900...", rollback: true}
```

First matching rule wins. A rule does not match once its action was carried out for the eUICC (an order
from this rule is done) or failed ``max_attempts`` times, so a policy never loops on a finished action.
Errors name ``file:rules[i].key: expected ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .packages import OrderError, validate

__all__ = ["Policy", "PolicyContext", "PolicyError", "Rule", "load_policy", "mcc_mnc", "parse_policy"]

# A few MCCs by ISO 3166 alpha-2 country (ITU-T E.212); 001 is the test network.
COUNTRIES = {
    "001": "TEST", "202": "GR", "204": "NL", "206": "BE", "208": "FR", "214": "ES", "222": "IT", "228": "CH",
    "232": "AT", "234": "GB", "235": "GB", "238": "DK", "240": "SE", "242": "NO", "244": "FI", "260": "PL",
    "262": "DE", "268": "PT", "272": "IE", "302": "CA", "310": "US", "311": "US", "312": "US", "313": "US",
    "314": "US", "315": "US", "316": "US", "334": "MX", "404": "IN", "405": "IN", "440": "JP", "441": "JP",
    "450": "KR", "460": "CN", "505": "AU", "530": "NZ", "724": "BR", "901": "INTL", "999": "TEST",
}
_CONDITIONS = ("mcc", "mnc", "country", "rat", "state_change_cause", "failed_attempts_gte", "failed_attempts_lt")


class PolicyError(ValueError):
    """A policy file that does not follow the schema; the message names file:key."""


def mcc_mnc(rplmn: bytes | str | None) -> tuple[str | None, str | None]:
    """(MCC, MNC) from a 3-byte PLMN (3GPP TS 24.008 §10.5.1.3), e.g. 00F110 -> ("001", "01")."""
    if rplmn is None:
        return None, None
    raw = bytes.fromhex(rplmn) if isinstance(rplmn, str) else rplmn
    if len(raw) != 3:
        return None, None
    digits = [raw[0] & 0xF, raw[0] >> 4, raw[1] & 0xF, raw[2] & 0xF, raw[2] >> 4, raw[1] >> 4]
    mcc = "".join(f"{d:X}" for d in digits[:3])
    mnc = "".join(f"{d:X}" for d in digits[3:]).rstrip("F")
    return mcc, mnc


@dataclass(frozen=True)
class PolicyContext:
    """What the policy decides on."""

    eid: str
    mcc: str | None = None
    mnc: str | None = None
    rat: str | None = None
    state_change_cause: str | None = None
    failed_attempts: int = 0

    @property
    def country(self) -> str | None:
        return COUNTRIES.get(self.mcc) if self.mcc else None


@dataclass(frozen=True)
class Rule:
    index: int
    when: dict[str, Any]
    kind: str                   # "download" or "psmo"
    params: dict[str, Any]
    max_attempts: int = 2

    def matches(self, ctx: PolicyContext) -> bool:
        for key, want in self.when.items():
            if key == "failed_attempts_gte":
                if ctx.failed_attempts < want:
                    return False
            elif key == "failed_attempts_lt":
                if ctx.failed_attempts >= want:
                    return False
            else:
                have = getattr(ctx, key)
                if have is None:
                    return False
                wanted = want if isinstance(want, list) else [want]
                if str(have).upper() not in {str(w).upper() for w in wanted}:
                    return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"rule": self.index, "when": self.when, "kind": self.kind, "params": self.params}


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    source: str = "<policy>"
    extra: dict[str, Any] = field(default_factory=dict)

    def choose(self, ctx: PolicyContext, history: dict[int, tuple[int, int]]) -> Rule | None:
        """The first rule that matches ``ctx`` and is not exhausted; ``history`` maps rule index to
        (orders done, orders failed) for this eUICC."""
        for rule in self.rules:
            done, failed = history.get(rule.index, (0, 0))
            if done or failed >= rule.max_attempts:
                continue
            if rule.matches(ctx):
                return rule
        return None


def _err(source: str, key: str, message: str) -> PolicyError:
    return PolicyError(f"{source}:{key}: {message}")


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate a parsed YAML document."""
    if not isinstance(data, dict) or set(data) - {"rules"}:
        raise _err(source, "(top)", "expected a mapping with one key 'rules'")
    rules_raw = data.get("rules")
    if not isinstance(rules_raw, list):
        raise _err(source, "rules", "expected a list of rules")
    rules = []
    for i, raw in enumerate(rules_raw):
        key = f"rules[{i}]"
        if not isinstance(raw, dict):
            raise _err(source, key, "expected a mapping with 'when' and 'download' or 'enable'")
        unknown = set(raw) - {"when", "download", "enable", "indirect", "rollback", "max_attempts"}
        if unknown:
            raise _err(source, f"{key}.{sorted(unknown)[0]}", "unknown key (expected when, download, enable, "
                       "indirect, max_attempts)")
        when = raw.get("when", {})
        if not isinstance(when, dict):
            raise _err(source, f"{key}.when", "expected a mapping of conditions")
        for cond, value in when.items():
            if cond not in _CONDITIONS:
                raise _err(source, f"{key}.when.{cond}", f"unknown condition (expected one of {', '.join(_CONDITIONS)})")
            if cond.startswith("failed_attempts"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise _err(source, f"{key}.when.{cond}", "expected a non-negative integer")
            elif isinstance(value, list):
                if not value or not all(isinstance(v, str) for v in value):
                    raise _err(source, f"{key}.when.{cond}", "expected a string or a list of strings")
            elif not isinstance(value, str):
                raise _err(source, f"{key}.when.{cond}", "expected a string (quote MCCs: \"001\")")
        actions = [a for a in ("download", "enable") if a in raw]
        if len(actions) != 1:
            raise _err(source, key, "expected exactly one action: download or enable")
        action = raw[actions[0]]
        if not isinstance(action, dict):
            raise _err(source, f"{key}.{actions[0]}", "expected a mapping")
        try:
            if actions[0] == "download":
                params = validate("download", {"activation_code": action.get("activation_code"),
                                               "indirect": raw.get("indirect", action.get("indirect", False))})
                kind = "download"
            else:
                params = validate("psmo", {"psmos": [{"enable": action}]})
                kind = "psmo"
        except OrderError as exc:
            raise _err(source, f"{key}.{actions[0]}.{exc.field or ''}".rstrip("."),
                       f"expected a valid value ({exc})") from None
        max_attempts = raw.get("max_attempts", 2)
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise _err(source, f"{key}.max_attempts", "expected a positive integer")
        rules.append(Rule(i, dict(when), kind, params, max_attempts))
    return Policy(tuple(rules), source)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PolicyError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_policy(data, str(path))
