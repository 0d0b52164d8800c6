"""pyproject.toml declares what the code imports, and the lock (requirements.txt) pins all of it.

- every third-party module imported by ``workbench/`` and the notebooks comes from a runtime
  dependency (or, for ``workbench/``, the optional "cloud" extra, imported only where used);
  what ``tests/`` imports comes from the runtime or the test/cloud extras;
- and the other way round: every runtime and test dependency is imported somewhere, or is
  listed in :data:`USED_WITHOUT_IMPORT` with the reason it is needed;
- the lock pins every declared package, runtime and extras, inside pyproject's ranges, each
  with its sha256 hashes, and ``make setup`` installs it with ``--require-hashes``;
- the lock says how it is regenerated, and ``make lock`` does it with a standard tool;
- the pre-commit hooks run the lock's versions; Python has a floor and no ceiling.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest
from lockfiles import BINDER_LOCK, LOCK, PROJECT, ROOT, closure, declared, hashes, names, pins
from packaging.utils import canonicalize_name

# the package and the tests' own helper modules (conftest, serving_helpers, lockfiles, ...)
LOCAL = {"workbench"} | {p.stem for p in (ROOT / "tests").rglob("*.py")}
# Modules imported by code that runs on another machine, never here: not declared.
ELSEWHERE = {
    "tflite_runtime": "workbench/edge/device_runner.py, on a device where LiteRT has no wheel",
}
# Declared, needed, and never imported by name: each with the reason (checked both ways below).
USED_WITHOUT_IMPORT = {
    "httptools": "uvicorn's httptools protocol, which workbench/cloud/serving/connections.py "
    "subclasses (uvicorn imports httptools)",
    "uvloop": "uvicorn's event loop wherever it is installed (its 'auto' choice)",
    "ipykernel": "the notebooks' kernel, installed as 'Python (workbench)' by make setup",
    "jupyterlab": "`make lab` and Binder's interface",
    "tensorboard": "notebook 02's TensorBoard logs, and tf.summary's writer",
    "pytest-timeout": "pytest's per-test timeout (pyproject.toml [tool.pytest.ini_options])",
    "moto": "the local S3 server tests/test_serving_s3.py starts (python -m moto.server)",
}
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
    """A notebook's code cells as Python: IPython magics and shell lines become ``pass`` at
    their indentation (a ``%pip install`` inside an ``if`` keeps the block valid)."""
    cells = json.loads(path.read_text())["cells"]
    lines = [
        line[: len(line) - len(line.lstrip())] + "pass"
        if line.lstrip().startswith(("%", "!"))
        else line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
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
        if module in ELSEWHERE:
            continue
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


def _imported_distributions() -> set[str]:
    providers = importlib.metadata.packages_distributions()
    files = [
        *sorted((ROOT / "workbench").rglob("*.py")),
        *sorted((ROOT / "notebooks").glob("*.ipynb")),
        *sorted((ROOT / "tests").rglob("*.py")),
    ]
    return {
        canonicalize_name(dist)
        for module in _third_party(files)
        for dist in providers.get(module, [])
    }


def test_every_runtime_and_test_dependency_is_used():
    """Nothing declared for nothing: imported somewhere, or needed for a stated reason."""
    imported = _imported_distributions()
    unused = sorted((RUNTIME | EXTRAS["test"]) - imported - set(USED_WITHOUT_IMPORT))
    assert not unused, (
        f"declared in pyproject.toml but imported nowhere: {unused}. Remove them, or add them to "
        "USED_WITHOUT_IMPORT with the reason they are needed."
    )
    stale = sorted(set(USED_WITHOUT_IMPORT) - (RUNTIME | EXTRAS["test"]))
    assert not stale, (
        f"USED_WITHOUT_IMPORT names packages pyproject.toml no longer declares: {stale}"
    )
    now_imported = sorted(set(USED_WITHOUT_IMPORT) & imported)
    assert not now_imported, f"imported now, drop them from USED_WITHOUT_IMPORT: {now_imported}"


def test_uvicorn_uses_httptools_and_uvloop_when_installed():
    """The reason the two are declared: uvicorn's 'auto' choices pick them."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = uvicorn.Config(app=lambda *a: None, http="auto", loop="auto")
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    if sys.platform != "win32":
        uvloop = importlib.import_module("uvloop")  # by name: this file must not count as a use

        loop = config.get_loop_factory()()
        try:
            assert isinstance(loop, uvloop.Loop), type(loop)
        finally:
            loop.close()


def test_extras_are_grouped():
    assert {"test", "dev", "cloud"} <= set(EXTRAS)
    assert {"pytest", "pytest-timeout", "playwright", "schemathesis", "moto"} <= EXTRAS["test"]
    assert {"ruff", "pre-commit", "nbstripout", "uv"} <= EXTRAS["dev"]
    assert {"fsspec", "s3fs"} <= EXTRAS["cloud"]
    assert "moto" not in EXTRAS["cloud"], "moto is a test server: the test extra, not cloud"
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
    assert "--generate-hashes" in makefile
    # make setup installs the lock, hash-checked, then the package itself without dependencies
    # (and without build isolation, which would fetch setuptools unhashed)
    assert "pip install --quiet --require-hashes -r requirements.txt" in makefile
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in makefile
    assert re.search(r"^\$\(STAMP\): requirements\.txt pyproject\.toml", makefile, re.M)
    assert re.search(r"^\s*make setup\s*$", (ROOT / ".ci" / "run").read_text(), re.M), (
        "CI must install through `make setup` (the lock, with --require-hashes)"
    )


@pytest.mark.parametrize("lock", [LOCK, BINDER_LOCK], ids=["lock", "binder"])
def test_every_pin_carries_its_hashes(lock):
    missing = sorted(name for name, digests in hashes(lock).items() if not digests)
    assert not missing, f"{lock.relative_to(ROOT)}: pins without --hash: {missing} (make lock)"
    # setuptools too: `make setup` builds the package without isolation from the lock's copy
    assert "setuptools" in pins(lock)


def test_python_has_a_floor_and_no_ceiling():
    requires = PROJECT["requires-python"]
    assert requires == ">=3.11", f"requires-python = {requires!r}: a floor, no upper cap"


@pytest.mark.parametrize(
    ("hook", "package"), [("ruff-pre-commit", "ruff"), ("nbstripout", "nbstripout")]
)
def test_pre_commit_hooks_run_the_locked_versions(hook, package):
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    rev = re.search(rf"{re.escape(hook)}\s+rev: v?([0-9.]+)", config)
    assert rev, f"{hook} hook missing from .pre-commit-config.yaml"
    assert pins(LOCK)[package] == rev[1], (
        f"the lock's {package} ({pins(LOCK)[package]}) and the pre-commit hook's ({rev[1]}) differ"
    )
    assert "check-added-large-files" in config


def test_license_file_matches_pyproject():
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert (
        text.startswith("Copyright ") and "The edge-cloud workbench authors" in text.split("\n")[0]
    )
