"""Binder's requirements are the runtime lock: exact pins, the runtime and nothing else, the
same pins as the lock, and installable by repo2docker before it copies the repository (its
cached layer, so a commit does not reinstall TensorFlow)."""

from __future__ import annotations

import os

from lockfiles import BINDER_LOCK, LOCK, ROOT, closure, declared, hashes, names, pins
from packaging.utils import canonicalize_name

BINDER = ROOT / "binder"


def test_binder_files_exist():
    for name in ("requirements.txt", "runtime.txt", "postBuild", "start"):
        assert (BINDER / name).is_file(), f"binder/{name} is missing"
    for name in ("postBuild", "start"):
        assert os.access(BINDER / name, os.X_OK), f"binder/{name} must be executable"


def test_binder_runtime_is_python_311():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_requirements_are_installable_in_repo2docker_cached_layer():
    # repo2docker installs requirements.txt before copying the repository only if no line
    # references a local file (-r, -c, -e, a path, file://); otherwise every commit rebuilds.
    # The only option allowed is a pin's --hash (pip then checks every file it installs).
    for raw in BINDER_LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().removesuffix("\\").strip()
        if line.startswith("--hash=sha256:"):
            continue
        assert not line.startswith("-"), f"binder/requirements.txt: option line {raw!r}"
        assert "://" not in line and not line.startswith("."), f"local reference: {raw!r}"
    assert pins(BINDER_LOCK), "binder/requirements.txt pins nothing"


def test_binder_hashes_are_the_locks():
    """Binder installs the very files CI tested: each pin with the lock's hashes."""
    lock = hashes(LOCK)
    differ = sorted(name for name, digests in hashes(BINDER_LOCK).items() if digests != lock[name])
    assert not differ, f"binder/requirements.txt hashes differ from the lock's: {differ}"


def test_every_binder_pin_equals_the_lock():
    lock = pins(LOCK)
    binder = pins(BINDER_LOCK)
    missing = sorted(set(binder) - set(lock))
    assert not missing, f"pinned for Binder but not in requirements.txt: {missing}"
    differ = {name: (v, lock[name]) for name, v in binder.items() if lock[name] != v}
    assert not differ, f"binder pin != lock pin (run `make lock`): {differ}"


def test_binder_pins_the_runtime_inside_pyproject_ranges():
    binder = pins(BINDER_LOCK)
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in binder, f"{name} is not pinned for Binder"
        assert requirement.specifier.contains(binder[name], prereleases=True), (
            f"binder pins {name}=={binder[name]}, outside pyproject's {requirement.specifier}"
        )


def test_binder_is_exactly_the_runtime_closure():
    """No test, dev or cloud package (nor anything only they need), and nothing missing."""
    binder = set(pins(BINDER_LOCK))
    runtime = closure(declared())
    extra = sorted(binder - runtime)
    assert not extra, f"binder/requirements.txt has packages the runtime does not need: {extra}"
    missing = sorted(runtime - binder)
    assert not missing, f"binder/requirements.txt lacks runtime packages: {missing}"
    # so the extras' own packages stay off Binder unless the runtime itself needs them
    for group in ("test", "dev", "cloud"):
        leaked = sorted((names(declared(group)) - runtime) & binder)
        assert not leaked, f"{group} extra's packages on Binder: {leaked}"
    for tool in ("pytest", "playwright", "schemathesis", "ruff", "uv", "pre-commit", "moto"):
        assert tool not in binder, f"{tool} must not be installed on Binder"


def test_tensorflow_and_tf_keras_share_a_minor_version():
    for path in (LOCK, BINDER_LOCK):
        found = pins(path)
        minor = {tuple(found[n].split(".")[:2]) for n in ("tensorflow", "tf-keras")}
        assert len(minor) == 1, (
            f"{path.relative_to(ROOT)}: tensorflow {found['tensorflow']} "
            f"with tf-keras {found['tf-keras']}"
        )


def test_postbuild_installs_the_package_without_dependencies():
    text = (BINDER / "postBuild").read_text()
    assert "pip install --no-deps -e ." in text


def test_readme_has_binder_badge_and_commands():
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/badge_logo.svg" in readme
    assert "make run" in readme and "make test" in readme
