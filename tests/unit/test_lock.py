"""pyproject.toml declares what the code imports, and the lock (requirements.txt) pins all of it.

- every third-party module imported by ``workbench/`` and the notebooks comes from a runtime
  dependency (or, for ``workbench/``, the optional "cloud" extra, imported only where used);
  what ``tests/`` imports comes from the runtime or the test/cloud extras;
- the lock pins every declared package, runtime and extras, inside pyproject's ranges;
- the lock says how it is regenerated, and ``make lock`` does it with a standard tool.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest
from lockfiles import LOCK, PROJECT, ROOT, closure, declared, names, pins
from packaging.utils import canonicalize_name

LOCAL = {"workbench", "conftest", "serving_helpers", "notebook_runs", "lockfiles"}
# Platform for which the lock is resolved (see LOCK_TARGET in the Makefile).
LOCK_ENV = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}
RUNTIME = names(declared())
EXTRAS = {group: names(declared(group)) for group in PROJECT["optional-dependencies"]}


def _imports_of_source(source: str) -> set[str]:
    """Top-level modules of the absolute imports in Python source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))  # IPython magics and shell lines
    ]
    return "\n".join(lines)


def _third_party(paths: list[Path]) -> dict[str, list[str]]:
    """Third-party top-level module -> the files that import it."""
    users: dict[str, list[str]] = {}
    for path in paths:
        source = _notebook_source(path) if path.suffix == ".ipynb" else path.read_text()
        for module in _imports_of_source(source):
            if module in sys.stdlib_module_names or module in LOCAL or module == "__future__":
                continue
            users.setdefault(module, []).append(str(path.relative_to(ROOT)))
    return users


def _check_declared(paths: list[Path], allowed: set[str], where: str) -> None:
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_third_party(paths).items()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported by {files[0]}) is not installed here")
        elif not dists & allowed:
            problems.append(
                f"{module} (imported by {files[0]}) comes from {sorted(dists)}, "
                f"which pyproject.toml does not declare for {where}"
            )
    assert not problems, "\n".join(problems)


def test_package_and_notebook_imports_are_runtime_dependencies():
    _check_declared(sorted((ROOT / "notebooks").glob("*.ipynb")), RUNTIME, "the notebooks")
    _check_declared(
        sorted((ROOT / "workbench").rglob("*.py")), RUNTIME | EXTRAS["cloud"], "workbench/"
    )


def test_test_imports_are_declared():
    allowed = RUNTIME | EXTRAS["test"] | EXTRAS["cloud"]
    _check_declared(sorted((ROOT / "tests").rglob("*.py")), allowed, "tests/")


def test_extras_are_grouped():
    assert {"test", "dev", "cloud"} <= set(EXTRAS)
    assert {"pytest", "pytest-timeout", "playwright", "schemathesis"} <= EXTRAS["test"]
    assert {"ruff", "pre-commit", "nbstripout", "uv"} <= EXTRAS["dev"]
    assert {"fsspec", "s3fs", "moto"} <= EXTRAS["cloud"]
    for group, members in EXTRAS.items():
        repeated = members & RUNTIME
        assert not repeated, f"extra {group!r} repeats runtime packages: {repeated}"


def test_tensorflow_family_is_ranged_to_one_minor():
    for requirement in declared():
        if requirement.name in ("tensorflow", "tf-keras", "tensorflow-serving-api"):
            assert set(map(str, requirement.specifier)) == {">=2.21", "<2.22"}, requirement


@pytest.mark.parametrize("group", [None, "test", "cloud", "dev"])
def test_lock_pins_every_declared_package_inside_its_range(group):
    lock = pins(LOCK)
    for requirement in declared(group):
        if requirement.marker and not requirement.marker.evaluate(LOCK_ENV):
            continue
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} ({group or 'runtime'}) is not in requirements.txt"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"requirements.txt pins {name}=={lock[name]} outside pyproject's "
            f"{requirement.specifier}: run `make lock`"
        )


def test_lock_is_exactly_the_closure_of_runtime_and_extras():
    """Complete (every package needed is pinned) and nothing stale (nothing unneeded)."""
    wanted = declared() + [r for group in ("test", "cloud", "dev") for r in declared(group)]
    needed = closure(wanted)
    lock = set(pins(LOCK))
    assert not sorted(needed - lock), f"needed but not locked: {sorted(needed - lock)}"
    assert not sorted(lock - needed), f"locked but not needed: {sorted(lock - needed)}"


def test_installed_versions_are_the_lock():
    """This environment was installed from the lock (`make setup` re-syncs it when it changes)."""
    if not (Path(sys.prefix) / ".installed").exists():
        pytest.skip("not an environment made by `make setup` (no .installed stamp)")
    differ = {}
    for name, version in pins(LOCK).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differ[name] = (version, installed)
    assert not differ, f"lock vs installed (run `make setup`): {differ}"


def test_lock_is_generated_and_says_how():
    text = (ROOT / "requirements.txt").read_text()
    header = text.split("\n", 10)[:10]
    assert any("make lock" in line for line in header), "the header must say `make lock`"
    assert "autogenerated by uv" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lock:", makefile, re.M) and "uv pip compile" in makefile
    # make setup installs the lock, then the package itself without dependencies
    assert "pip install --quiet -r requirements.txt" in makefile
    assert "pip install --quiet --no-deps -e ." in makefile
    assert re.search(r"^\$\(STAMP\): requirements\.txt pyproject\.toml", makefile, re.M)


def test_ruff_matches_the_pre_commit_hook():
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    rev = re.search(r"ruff-pre-commit\s+rev: v([0-9.]+)", config)
    assert rev, "ruff hook missing from .pre-commit-config.yaml"
    assert pins(LOCK)["ruff"] == rev[1], "the lock's ruff and the pre-commit hook's ruff differ"
    assert "check-added-large-files" in config and "nbstripout" in config


def test_license_file_matches_pyproject():
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert (
        text.startswith("Copyright ") and "The edge-cloud workbench authors" in text.split("\n")[0]
    )
