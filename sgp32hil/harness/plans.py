"""Test plans: YAML files that select conformance tests by their stable IDs (``testplans/plans/*.yaml``).

A plan names the tests it runs with ``include`` (IDs or shell-style patterns such as ``HIL-EUICC-*``) and
may ``exclude`` some of them again. ``sgp32-hil run --plan NAME`` looks the name up in the plans folder;
a path to a YAML file works too.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import yaml

import sgp32hil


class PlanError(ValueError):
    """A plan file is missing or malformed; the message names the file and the key."""


def testplans_dir() -> Path:
    """The conformance test modules shipped with this checkout."""
    return Path(sgp32hil.__file__).resolve().parent.parent / "testplans"


def plan_names() -> list[str]:
    return sorted(p.stem for p in (testplans_dir() / "plans").glob("*.yaml"))


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    source: str = ""

    def selects(self, test_id: str) -> bool:
        def hit(patterns):
            return any(fnmatch.fnmatchcase(test_id, p) for p in patterns)

        return hit(self.include) and not hit(self.exclude)


def load_plan(name_or_path: str | Path) -> Plan:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = testplans_dir() / "plans" / f"{name_or_path}.yaml"
        if not path.is_file():
            raise PlanError(f"plan {name_or_path!r}: no such plan (known: {', '.join(plan_names()) or 'none'})")
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlanError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise PlanError(f"{path}: expected a mapping with 'include' (list of test IDs or patterns)")
    unknown = set(doc) - {"name", "description", "include", "exclude"}
    if unknown:
        raise PlanError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; expected name, description, include, exclude")
    lists = {}
    for key in ("include", "exclude"):
        value = doc.get(key, [] if key == "exclude" else None)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise PlanError(f"{path}: '{key}' must be a list of test IDs or patterns")
        lists[key] = tuple(value)
    if not lists["include"]:
        raise PlanError(f"{path}: 'include' is empty: the plan would run nothing")
    return Plan(name=str(doc.get("name", path.stem)), description=str(doc.get("description", "")),
                include=lists["include"], exclude=lists["exclude"], source=str(path))
