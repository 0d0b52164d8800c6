"""Reading the locks and pyproject.toml's dependencies, for test_lock.py and test_binder.py."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"
BINDER_LOCK = ROOT / "binder" / "requirements.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a lock file; fails on any line that is not an exact pin."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.relative_to(ROOT)}:{number}: not an exact pin: {raw!r}"
        found[canonicalize_name(match[1])] = match[2]
    return found


def declared(group: str | None = None) -> list[Requirement]:
    """pyproject's runtime dependencies (``group=None``) or one extra's."""
    specs = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
    return [Requirement(spec) for spec in specs]


def names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` need on this platform, from the installed metadata.

    The environment must be installed from the lock (``make setup``); a missing distribution
    fails with its name.
    """
    needed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while stack:
        requirement = stack.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        needed.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"{name} is not installed: run `make setup`") from None
        extras = {""} | set(requirement.extras)
        for text in requires:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras):
                stack.append(dependency)
    return needed
