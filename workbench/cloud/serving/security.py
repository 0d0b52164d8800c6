"""Who may use the server, and over what: bearer tokens, TLS, hosts and origins.

- **Tokens** (``--auth-token-file``): one token per line; every request must carry
  ``Authorization: Bearer <token>`` (REST) or the same ``authorization`` metadata (gRPC),
  compared in constant time (:func:`hmac.compare_digest`). Without one: 401 with
  ``WWW-Authenticate: Bearer`` on REST, ``UNAUTHENTICATED`` on gRPC. ``/healthz`` and
  ``/metrics`` need it too unless ``--open-health-metrics``.
- **TLS** (``--ssl-certfile``, ``--ssl-keyfile``; ``--ssl-ca-certs`` for mutual TLS: clients
  must then present a certificate signed by that CA) on REST and gRPC alike.
- **Hosts and origins**: with ``--allowed-hosts`` only those ``Host`` names are answered
  (400 otherwise); by default a server bound to a loopback address answers only loopback
  names, which defeats DNS rebinding. A browser's cross-origin request (an ``Origin`` that
  is not the server's own) gets 403 unless ``--allowed-origins`` lists it.

:func:`exposure_warnings` says what is open when the server listens beyond loopback. The gRPC
side of the same options is in :mod:`~workbench.cloud.serving.grpc_api`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from pathlib import Path

from workbench.cloud.serving.options import ServerOptions

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = ("/healthz", "/metrics")
MIN_TOKEN_CHARS = 16


def read_tokens(path: str | Path) -> list[bytes]:
    """The tokens in ``path``: one per line; blank lines and ``#`` comments are skipped.

    Raises:
        FileNotFoundError, ValueError: no file, or no token in it.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise FileNotFoundError(f"--auth-token-file {path} cannot be read ({err})") from err
    tokens = [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
    if not tokens:
        raise ValueError(f"--auth-token-file {path} holds no token (one per line)")
    short = [t for t in tokens if len(t) < MIN_TOKEN_CHARS]
    if short:
        raise ValueError(
            f"--auth-token-file {path}: {len(short)} token(s) shorter than {MIN_TOKEN_CHARS} "
            "characters; use long random ones, e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'"
        )
    return [t.encode() for t in tokens]


def token_matches(authorization: str | bytes | None, tokens: list[bytes]) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <one of tokens>`` (constant time)."""
    if authorization is None:
        return False
    value = authorization if isinstance(authorization, bytes) else authorization.encode()
    scheme, _, given = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    given = given.strip()
    found = False
    for token in tokens:  # every token compared, so the time does not tell which one matched
        found |= hmac.compare_digest(given, token)
    return found


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts(options: ServerOptions) -> frozenset[str] | None:
    """Host names to answer (lower case, no port), or None for any."""
    text = (options.allowed_hosts or "").strip()
    if text == "*":
        return None
    if text:
        return frozenset(h.strip().lower() for h in text.split(",") if h.strip())
    if is_loopback(options.host):
        return LOOPBACK_NAMES | {options.host.lower()}
    return None


def exposure_warnings(options: ServerOptions) -> list[str]:
    """What is open to the network when the server listens beyond loopback."""
    if is_loopback(options.host):
        return []
    warnings = []
    where = f"{options.host}:{options.port}" + (
        f" and gRPC port {options.grpc_port}" if options.grpc_port else ""
    )
    if not options.auth_token_file and not options.ssl_ca_certs:
        warnings.append(
            f"serving on {where} without --auth-token-file or client certificates "
            "(--ssl-ca-certs): anyone who can reach the port can use the models"
        )
    if not options.ssl_certfile:
        warnings.append(
            f"serving on {where} without TLS (--ssl-certfile, --ssl-keyfile): requests, "
            "predictions and tokens travel in clear text"
        )
    return warnings


class AccessGuard:
    """Pure ASGI middleware: Host, Origin and bearer-token checks before any route runs.

    Args:
        app: the application behind it.
        options: the server's options (hosts, origins, token file, open health/metrics).
    """

    def __init__(self, app, options: ServerOptions, on_refusal=None) -> None:
        self.app = app
        self.hosts = allowed_hosts(options)
        self.origins = frozenset(
            o.strip().rstrip("/").lower()
            for o in (options.allowed_origins or "").split(",")
            if o.strip()
        )
        self.tokens = read_tokens(options.auth_token_file) if options.auth_token_file else None
        self.open_paths = OPEN_PATHS if options.open_health_metrics else ()
        self.on_refusal = on_refusal

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        refusal = self._refusal(scope, headers, host)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message, reason = refusal
        if self.on_refusal is not None:
            self.on_refusal(reason)
        body = json.dumps({"error": message}).encode()
        extra = [(b"www-authenticate", b'Bearer realm="workbench"')] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope, headers: dict, host: str) -> tuple[int, str, str] | None:
        name = _host_name(host)
        if self.hosts is not None and name not in self.hosts:
            return (
                400,
                f"Host {host[:100]!r} is not served here (--allowed-hosts)",
                "host",
            )
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1").strip().rstrip("/").lower()
            same = text.partition("://")[2] == host
            if not same and text not in self.origins:
                return (
                    403,
                    f"Cross-origin request from {text[:100]!r} refused (--allowed-origins)",
                    "origin",
                )
        if self.tokens is not None and scope["path"] not in self.open_paths:
            if not token_matches(headers.get(b"authorization"), self.tokens):
                return (
                    401,
                    "Missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                    "token",
                )
        return None


def _host_name(host: str) -> str:
    """``example.com:8501`` -> ``example.com``; ``[::1]:8501`` -> ``::1``."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
