"""The model registry: which versions are served, loaded as TensorFlow Serving does.

- A **version policy** picks the versions to serve among those in the model base:
  ``latest`` (the newest; ``latest:N`` the N newest), ``all``, or ``specific:V1,V2``.
- The base is **polled** (``--poll-seconds``): a new version is loaded completely, then
  served, and only then are versions it replaces unloaded; a removed version is unloaded.
- A version that fails to load is reported in its status (state ``END`` with
  ``status.error_message``) and not retried until its files change; the newest version that
  did load keeps serving. A SavedModel whose graphs reach files, processes or the network is
  such a failure unless the server runs with ``--trust-model``.

Loading one version (a servable) is :mod:`~workbench.cloud.serving.servable`'s job.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.cloud.serving.errors import RequestError
from workbench.cloud.serving.servable import LoadedModel

log = logging.getLogger("workbench.cloud.serving")


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve: ``latest[:N]``, ``all`` or ``specific:V1,V2,...``."""

    kind: str
    versions: tuple[int, ...] = ()
    num_latest: int = 1

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """Parse ``latest``, ``latest:2``, ``all`` or ``specific:1,3``; raise ValueError if bad."""
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "latest":
                n = int(arg) if arg else 1
                if n < 1:
                    raise ValueError
                return cls("latest", num_latest=n)
            if kind == "all" and not arg:
                return cls("all")
            if kind == "specific":
                versions = tuple(sorted({int(v) for v in arg.split(",")}))
                if versions and min(versions) >= 0:
                    return cls("specific", versions=versions)
        except ValueError:
            pass
        raise ValueError(
            f"Invalid version policy {text!r}: use latest, latest:N, all, or specific:V1,V2 "
            "(version numbers)"
        )

    def candidates(self, present: list[int]) -> list[int]:
        """The versions this policy may serve, newest first."""
        newest_first = sorted(present, reverse=True)
        if self.kind == "specific":
            return [v for v in newest_first if v in self.versions]
        return newest_first

    @property
    def wanted(self) -> int | None:
        """How many versions to serve at most (None: every candidate)."""
        return self.num_latest if self.kind == "latest" else None

    def __str__(self) -> str:
        if self.kind == "latest":
            return "latest" if self.num_latest == 1 else f"latest:{self.num_latest}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return self.kind


@dataclass
class VersionStatus:
    """A version's state as TF Serving reports it (START, LOADING, AVAILABLE, UNLOADING, END)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


class Registry:
    """The served versions of every model under a model base.

    Args:
        base: a :class:`~workbench.cloud.serving.storage.LocalBase` or ``RemoteBase``.
        policy: the version policy.
        loader: ``loader(path, name, version) -> LoadedModel``.
    """

    def __init__(self, base: Any, *, policy: VersionPolicy, loader: Callable[..., Any]) -> None:
        self.base = base
        self.policy = policy
        self.loader = loader
        self.poll_error: str | None = None
        self._served: dict[str, dict[int, LoadedModel]] = {}
        self._states: dict[str, dict[int, VersionStatus]] = {}
        self._failed: dict[tuple[str, int], tuple[str, str]] = {}  # -> (fingerprint, message)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------ reading

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The served model (newest served version if ``version`` is None), or NOT_FOUND."""
        versions = self._served.get(name)
        if not versions:
            raise RequestError(f"Servable not found for request: Latest({name})", "NOT_FOUND")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise RequestError(
                f"Servable not found for request: Specific({name}, {version})", "NOT_FOUND"
            )
        return versions[version]

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Status of every version seen (newest first), or of one; NOT_FOUND if unknown."""
        states = self._states.get(name)
        if not states:
            raise RequestError(f"Could not find any versions of model {name}", "NOT_FOUND")
        if version is None:
            return [states[v] for v in sorted(states, reverse=True)]
        if version not in states:
            raise RequestError(f"Could not find version {version} of model {name}", "NOT_FOUND")
        return [states[version]]

    def served(self) -> dict[str, list[int]]:
        return {n: sorted(v) for n, v in self._served.items() if v}

    def errors(self) -> dict[str, str]:
        return {f"{n}/{v}": message for (n, v), (_, message) in sorted(self._failed.items())}

    # ------------------------------------------------------------ loading

    def refresh(self) -> None:
        """Scan the base once: load what the policy wants, then unload what it no longer does."""
        with self._refresh_lock:
            try:
                found = self.base.scan()
            except Exception as err:  # noqa: BLE001 - keep serving what is loaded
                message = f"cannot list {self.base.url}: {type(err).__name__}: {err}"
                if message != self.poll_error:
                    log.warning("Model base: %s (still serving what is loaded)", message)
                self.poll_error = message
                return
            self.poll_error = None
            for name in sorted(set(found) | set(self._served)):
                self._refresh_model(name, found.get(name, {}))

    def _refresh_model(self, name: str, present: dict[int, str]) -> None:
        served = dict(self._served.get(name, {}))
        for key in [k for k in self._failed if k[0] == name and k[1] not in present]:
            del self._failed[key]
        keep: list[int] = []
        for version in self.policy.candidates(list(present)):
            if self.policy.wanted is not None and len(keep) >= self.policy.wanted:
                break
            if version in served:
                keep.append(version)
                continue
            failed = self._failed.get((name, version))
            if failed and failed[0] == present[version]:
                continue  # same broken files as last time
            model = self._load(name, version, present[version])
            if model is not None:
                served[version] = model
                keep.append(version)
                self._publish(name, served)  # served before anything it replaces is unloaded
        for version in [v for v in served if v not in keep]:
            self._unload(name, served.pop(version))
        self._publish(name, served)

    def _load(self, name: str, version: int, fingerprint: str) -> LoadedModel | None:
        self._set_state(name, version, "LOADING")
        try:
            path = self.base.fetch(name, version)
            model = self.loader(path, name, version)
        except Exception as err:  # noqa: BLE001 - a broken version must not stop the others
            message = f"{type(err).__name__}: {str(err).strip()[:2000]}"
            log.error("Failed to load %s version %s: %s", name, version, message)
            self._failed[(name, version)] = (fingerprint, message)
            self._set_state(name, version, "END", "UNKNOWN", message)
            self.base.release(name, version)
            return None
        self._failed.pop((name, version), None)
        self._set_state(name, version, "AVAILABLE")
        runtime = getattr(model, "runtime", "TensorFlow")
        log.info("Serving %s version %s from %s (%s)", name, version, self.base.url, runtime)
        return model

    def _unload(self, name: str, model: LoadedModel) -> None:
        self._set_state(name, model.version, "UNLOADING")
        self._publish_without(name, model.version)
        model.close()
        self.base.release(name, model.version)
        self._set_state(name, model.version, "END")
        log.info("Unloaded %s version %s", name, model.version)
        del model
        _trim_memory()

    def _publish(self, name: str, served: dict[int, LoadedModel]) -> None:
        with self._lock:
            self._served = {**self._served, name: dict(served)}

    def _publish_without(self, name: str, version: int) -> None:
        with self._lock:
            current = dict(self._served.get(name, {}))
            current.pop(version, None)
            self._served = {**self._served, name: current}

    def _set_state(self, name: str, version: int, state: str, code="OK", message="") -> None:
        with self._lock:
            states = dict(self._states.get(name, {}))
            states[version] = VersionStatus(version, state, code, message)
            self._states = {**self._states, name: states}

    # ------------------------------------------------------------ polling

    def start_polling(self, seconds: float) -> None:
        """Re-scan the base every ``seconds`` in a background thread (0: never)."""
        if seconds <= 0 or self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - the poller must survive anything
                    log.exception("Model base poll failed")

        self._poller = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._poller.start()

    def close(self) -> None:
        """Stop polling and unload everything."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        with self._refresh_lock:
            for versions in list(self._served.values()):
                for model in list(versions.values()):
                    model.close()
            self._served = {}
        close_base = getattr(self.base, "close", None)
        if close_base:
            close_base()


def _trim_memory() -> None:
    """Collect the unloaded model and hand freed heap pages back to the OS (glibc)."""
    import ctypes
    import sys

    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
