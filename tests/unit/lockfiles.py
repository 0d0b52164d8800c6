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
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)(?:\s*;\s*[^-]+?)?$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, sha256 hashes)`` of a lock file, continuation lines joined.

    Fails on any requirement that is not an exact pin, and on any option but ``--hash``.
    """
    found: dict[str, tuple[str, list[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()  # a comment: '#' at a word's start
        if not line:
            continue
        requirement, *options = line.split(" --")
        options = ["--" + o.strip() for o in options]
        match = PIN.match(requirement.strip())
        assert match, f"{path.relative_to(ROOT)}: not an exact pin: {raw!r}"
        bad = [o for o in options if not HASH.match(o)]
        assert not bad, f"{path.relative_to(ROOT)}: {match[1]}: unexpected option(s) {bad}"
        found[canonicalize_name(match[1])] = (match[2], [o.split(":", 1)[1] for o in options])
    return found


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a lock file; fails on any line that is not an exact pin."""
    return {name: version for name, (version, _) in entries(path).items()}


def hashes(path: Path) -> dict[str, list[str]]:
    """``name -> [sha256, ...]``: the hashes a lock file gives each pin."""
    return {name: digests for name, (_, digests) in entries(path).items()}


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
