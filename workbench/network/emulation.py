"""Real links on this machine, to check the link model of :mod:`workbench.network.links`.

A link joins this process (the "edge", in the root network namespace) to a fresh network
namespace (the "cloud") through a veth pair, and ``tc`` shapes each direction on the
egress of its end: the host end carries the uplink, the namespace end the downlink. Two
shapers, whichever the kernel has:

- **netem** (:func:`emulated_link`): delay, jitter and a rate that serialises every
  frame, as a link does. Many kernels ship without ``sch_netem``.
- **TBF**, a token bucket (:func:`shaped_link`): a rate, no delay. A token bucket differs
  from a link of the same rate in one way: after an idle moment it lets a whole bucket
  (``burst`` bytes, at least one full frame) through at once, where the link takes
  ``burst * 8 / rate``. To behave like a link, each side drains its bucket just before it
  sends a message, with padding frames addressed to a neighbour that exists only as an
  entry in the sender's neighbour table: they cross the shaper, then the other end drops
  them (they carry a MAC address it does not have). From then on every frame waits for
  its own tokens, ``bytes * 8 / rate``. (TBF rather than HTB for this: TBF holds a frame
  until its tokens are there; HTB sends it while its tokens are positive and charges
  after, so a lone frame would leave before its time is paid.)
  :mod:`workbench.network.linkbench` measures with it.

Names are unique per run (namespace ``wb-<pid>-<random>``, interfaces
``wb<pid, hex>-<random><role>``, at most 15 characters as Linux requires; addresses a
free /29 of the link-local range), and everything is removed on exit, even after an
error; :func:`teardown` also removes what a run that was killed left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.network.latency import Link

MTU_FRAME = 1514  # bytes of an Ethernet frame carrying a full 1500-byte IP packet
UDP_FRAME_OVERHEAD = 42  # Ethernet 14 + IPv4 20 + UDP 8 bytes
# Longest wait for one `ip` or `tc` command (they take milliseconds): past it, the kernel's
# network configuration is held by something else, and waiting on would hang the run.
COMMAND_TIMEOUT_S = 30

_NETNS = re.compile(r"^wb-(?P<pid>\d+)-(?P<tag>[0-9a-f]{4})$")
_IFNAME = re.compile(r"^wb(?P<pid>[0-9a-f]+)-(?P<tag>[0-9a-f]{4})[a-zA-Z]$")
_LEGACY = ("wb-cloud", "wb-edge0")  # the fixed names of earlier versions
_PAD_MACS = ("02:77:62:00:00:05", "02:77:62:00:00:06")  # locally administered, owned by no one


class LinkEmulationError(RuntimeError):
    """This machine cannot build the link: not root, no iproute2, a qdisc the kernel lacks."""


# ================================================================== names and addresses


# Suffixes: from a random start, one more per call, so that one process never hands out the
# same one twice (65,536 calls) and two processes rarely start at the same place.
_TAGS = itertools.count(secrets.randbelow(0x10000))


def run_names(pid: int | None = None) -> tuple[str, str]:
    """A namespace name and an interface-name prefix unique to this run.

    Both carry the process id and the same random suffix, so that a later run can tell
    whether their owner is still alive (:func:`teardown`). The prefix leaves one
    character for the role of each interface; with it a name stays within Linux's
    15-character limit for any process id (at most 2**22, six hex digits).
    """
    pid = os.getpid() if pid is None else pid
    tag = f"{next(_TAGS) % 0x10000:04x}"
    return f"wb-{pid}-{tag}", f"wb{pid:x}-{tag}"


def free_subnet(
    used: Sequence[ipaddress.IPv4Interface], rng: random.Random | None = None
) -> ipaddress.IPv4Network:
    """A /29 in the link-local range 169.254.0.0/16 that clashes with no address in ``used``.

    Link-local addresses never leave the link they are on; 169.254.169.0/24 (cloud
    metadata services) and the first and last /24 (reserved by RFC 3927) are avoided.
    """
    rng = rng or random.Random()
    thirds = [n for n in range(1, 255) if n != 169]
    for _ in range(200):
        net = ipaddress.IPv4Network(f"169.254.{rng.choice(thirds)}.{rng.randrange(0, 256, 8)}/29")
        if not any(
            iface.ip in net or (iface.network.prefixlen >= 24 and iface.network.overlaps(net))
            for iface in used
        ):
            return net
    raise LinkEmulationError("no free /29 in 169.254.0.0/16 for a veth pair")


def padding_frames(n_bytes: int) -> list[int]:
    """Split ``n_bytes`` of padding into UDP frames of at most :data:`MTU_FRAME` bytes each."""
    if n_bytes <= 0:
        return []
    count = math.ceil(n_bytes / MTU_FRAME)
    size, extra = divmod(n_bytes, count)
    frames = [size + (i < extra) for i in range(count)]
    if frames[-1] < UDP_FRAME_OVERHEAD:
        raise ValueError(f"{n_bytes} bytes of padding make frames smaller than a UDP header")
    return frames


def send_padding(sock: socket.socket, address: str, n_bytes: int) -> int:
    """Send ``n_bytes`` of frames (headers included) to ``address``; return the bytes sent."""
    frames = padding_frames(n_bytes)
    for frame in frames:
        sock.sendto(bytes(frame - UDP_FRAME_OVERHEAD), (address, 9))  # port 9: discard
    return sum(frames)


# ================================================================== ip and tc


def _run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    """Run an ``ip``/``tc`` command; LinkEmulationError if it fails (``check``) or hangs."""
    try:
        return subprocess.run(
            cmd, check=check, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        )
    except subprocess.CalledProcessError as err:
        raise LinkEmulationError(
            f"`{' '.join(cmd)}` failed: {(err.stderr or err.stdout).strip()}"
        ) from err
    except subprocess.TimeoutExpired as err:
        raise LinkEmulationError(
            f"`{' '.join(cmd)}` did not finish within {COMMAND_TIMEOUT_S} s: another process "
            "may hold the kernel's network configuration (look for a stuck `ip` or `tc` in "
            "`ps`); try again once it is gone."
        ) from err


def _ip(*args: str, netns: str | None = None) -> str:
    return _run(["ip", *(["-n", netns] if netns else []), *args]).stdout


def _tc(*args: str, netns: str | None = None) -> str:
    return _run(["tc", *(["-n", netns] if netns else []), *args]).stdout


def _quiet(cmd: list[str]) -> None:
    """Best-effort clean-up: a failure or a hang is passed over (a later run's
    :func:`teardown` removes what is left)."""
    with contextlib.suppress(LinkEmulationError):
        _run(cmd, check=False)


def _require_tools() -> tuple[bool, str]:
    if sys.platform != "linux":
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "creating network namespaces and qdiscs needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"the '{tool}' command (iproute2) is not installed"
    return True, ""


def _probe(qdisc: list[str]) -> tuple[bool, str]:
    """Whether a namespace, a veth pair in it and ``qdisc`` on the veth can be created."""
    ok, why = _require_tools()
    if not ok:
        return ok, why
    netns, prefix = run_names()
    try:
        _ip("netns", "add", netns)
    except LinkEmulationError as err:
        return False, f"cannot create a network namespace ({err})"
    veth = ["link", "add", f"{prefix}a", "type", "veth", "peer", "name", f"{prefix}b"]
    steps = [("veth pairs", ["ip", "-n", netns, *veth])]
    steps.append(
        (f"tc {qdisc[0]}", ["tc", "-n", netns, "qdisc", "add", "dev", f"{prefix}a", "root", *qdisc])
    )
    try:
        for what, cmd in steps:
            try:
                done = _run(cmd, check=False)
            except LinkEmulationError as err:
                return False, f"{what}: {err}"
            if done.returncode:
                return False, f"{what} not available in this kernel ({done.stderr.strip()})"
    finally:
        _quiet(["ip", "netns", "del", netns])
    return True, f"ip netns, veth and tc {qdisc[0]} work"


def netem_available() -> tuple[bool, str]:
    """Whether this machine can emulate links with ``tc netem`` (delay and rate), and why not."""
    return _probe(["netem", "delay", "1ms"])


def shaping_available() -> tuple[bool, str]:
    """Whether this machine can shape links with ``tc tbf`` (a rate), and why not."""
    return _probe(["tbf", "rate", "1mbit", "burst", str(2 * MTU_FRAME), "limit", "100000"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_names() -> list[str]:
    out = _run(["ip", "-o", "link", "show"], check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _remove(netns: str, prefix: str | None) -> list[str]:
    """Stop what runs in ``netns``, delete its host-side interfaces and the namespace.

    Returns:
        the names removed.
    """
    pids = _run(["ip", "netns", "pids", netns], check=False).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    links = [n for n in _link_names() if prefix and n.startswith(prefix)]
    for name in links:
        _quiet(["ip", "link", "del", name])
    _quiet(["ip", "netns", "del", netns])
    return [netns, *links]


def teardown() -> list[str]:
    """Remove namespaces and interfaces left behind by runs whose process has exited.

    Returns:
        the names removed. Links of runs still alive are left alone.
    """
    if not _require_tools()[0]:
        return []
    removed = []
    for netns in _netns_names():
        match = _NETNS.match(netns)
        if (match and not _alive(int(match["pid"]))) or netns == _LEGACY[0]:
            prefix = f"wb{int(match['pid']):x}-{match['tag']}" if match else None
            removed += _remove(netns, prefix)
    for name in _link_names():
        match = _IFNAME.match(name)
        if name not in removed and (
            (match and not _alive(int(match["pid"], 16))) or name == _LEGACY[1]
        ):
            _quiet(["ip", "link", "del", name])
            removed.append(name)
    return removed


def _used_addresses() -> list[ipaddress.IPv4Interface]:
    out = _ip("-4", "-o", "addr", "show")
    return [ipaddress.IPv4Interface(m) for m in re.findall(r"inet (\S+)", out)]


@dataclass(frozen=True)
class Veth:
    """One veth pair: ``host_if`` here, ``ns_if`` in the namespace, on a /29 of their own."""

    host_if: str
    ns_if: str
    network: ipaddress.IPv4Network

    @property
    def host_ip(self) -> str:
        return str(self.network[1])

    @property
    def ns_ip(self) -> str:
        return str(self.network[2])


@contextlib.contextmanager
def _namespace() -> Iterator[tuple[str, str]]:
    """A new, empty network namespace (loopback up); yields its name and the interface prefix."""
    ok, why = _require_tools()
    if not ok:
        raise LinkEmulationError(f"Cannot build a link here: {why}.")
    teardown()
    for _ in range(5):
        netns, prefix = run_names()
        if netns not in _netns_names():
            break
    _ip("netns", "add", netns)
    try:
        _ip("link", "set", "lo", "up", netns=netns)
        yield netns, prefix
    finally:
        _remove(netns, prefix)


def _add_veth(netns: str, prefix: str, role: str) -> Veth:
    """Create a veth pair from here into ``netns``, address both ends and bring them up."""
    veth = Veth(f"{prefix}{role}", f"{prefix}{role.upper()}", free_subnet(_used_addresses()))
    plen = veth.network.prefixlen
    _ip("link", "add", veth.host_if, "type", "veth", "peer", "name", veth.ns_if, "netns", netns)
    _ip("addr", "add", f"{veth.host_ip}/{plen}", "dev", veth.host_if)
    _ip("link", "set", veth.host_if, "up")
    _ip("addr", "add", f"{veth.ns_ip}/{plen}", "dev", veth.ns_if, netns=netns)
    _ip("link", "set", veth.ns_if, "up", netns=netns)
    return veth


# ================================================================== netem


@dataclass(frozen=True)
class EmulatedLink:
    """A link shaped with netem: reach the namespace ``netns`` at ``ns_ip``."""

    netns: str
    host_ip: str
    ns_ip: str


@contextlib.contextmanager
def emulated_link(link: Link, *, jitter: bool = False) -> Iterator[EmulatedLink]:
    """A namespace reachable from here over a veth pair shaped like ``link`` with netem.

    Delay is split in half per direction (so the RTT is ``link.rtt_ms``); the host side's
    egress is limited to the uplink, the namespace side's to the downlink. Start a server
    in it with ``serving.serving(host=net.ns_ip, netns=net.netns)``. Everything is
    removed on exit, even after an error.

    Raises:
        LinkEmulationError: where netem (or root, or iproute2) is missing.
    """
    ok, why = netem_available()
    if not ok:
        raise LinkEmulationError(f"Cannot emulate a link here: {why}.")
    with _namespace() as (netns, prefix):
        veth = _add_veth(netns, prefix, "e")
        half = f"{link.rtt_ms / 2:.3f}ms"
        spread = (
            [f"{link.jitter_ms / 2:.3f}ms", "distribution", "normal"]
            if jitter and link.jitter_ms
            else []
        )
        netem = ["root", "netem", "delay", half, *spread, "rate"]
        _tc("qdisc", "add", "dev", veth.host_if, *netem, f"{link.uplink_mbps}mbit")
        _tc("qdisc", "add", "dev", veth.ns_if, *netem, f"{link.downlink_mbps}mbit", netns=netns)
        yield EmulatedLink(netns=netns, host_ip=veth.host_ip, ns_ip=veth.ns_ip)


# ================================================================== TBF


def default_burst(mbps: float) -> int:
    """A TBF bucket for ``mbps``: two full frames, or 1 ms at the rate if that is more.

    A bucket must hold the largest frame; a little more lets the shaper catch up when its
    timer fires late, which keeps the average rate exact.
    """
    return max(2 * MTU_FRAME, math.ceil(mbps * 1e6 / 8 * 1e-3))


@dataclass
class ShapedLink:
    """Two veth pairs into one namespace: ``shaped`` (TBF each way) and ``reference`` (none).

    Attributes:
        netns: the namespace ("the cloud").
        shaped: the rate-limited pair.
        reference: an unshaped pair to the same namespace, for base times.
        up_mbps, down_mbps: the rates now set (see :meth:`shape`).
        up_burst, down_burst: the buckets now set, in bytes, as the kernel reports them.
    """

    netns: str
    shaped: Veth
    reference: Veth
    up_mbps: float = 0.0
    down_mbps: float = 0.0
    up_burst: int = 0
    down_burst: int = 0
    _pad_socket: socket.socket = field(
        default_factory=lambda: socket.socket(type=socket.SOCK_DGRAM)
    )

    @property
    def host_pad_ip(self) -> str:
        """Where the host side sends padding: a neighbour that exists only as an entry."""
        return str(self.shaped.network[5])

    @property
    def ns_pad_ip(self) -> str:
        """Where the namespace side sends padding."""
        return str(self.shaped.network[6])

    def shape(
        self, up_mbps: float, down_mbps: float | None = None, *, limit_bytes: int = 4 << 20
    ) -> None:
        """Set (or change) the TBF rate of each direction.

        Args:
            up_mbps: rate from here to the namespace, Mbit/s.
            down_mbps: rate back (default: the same).
            limit_bytes: queue length; the default holds any message measured here, so no
                packet is dropped and no retransmission blurs the timing.
        """
        down_mbps = up_mbps if down_mbps is None else down_mbps
        for mbps in (up_mbps, down_mbps):
            if not 0 < mbps <= 10_000:
                raise ValueError(f"rate {mbps} Mbit/s: expected a rate in (0, 10000] Mbit/s")
        for dev, ns, mbps in (
            (self.shaped.host_if, None, up_mbps),
            (self.shaped.ns_if, self.netns, down_mbps),
        ):
            tbf = ["tbf", "rate", f"{mbps}mbit", "burst", str(default_burst(mbps))]
            _tc("qdisc", "replace", "dev", dev, "root", *tbf, "limit", str(limit_bytes), netns=ns)
        self.up_mbps, self.down_mbps = up_mbps, down_mbps
        self.up_burst = self._qdisc(self.shaped.host_if, None)["options"]["burst"]
        self.down_burst = self._qdisc(self.shaped.ns_if, self.netns)["options"]["burst"]

    def _qdisc(self, dev: str, netns: str | None) -> dict[str, Any]:
        return json.loads(_tc("-s", "-j", "qdisc", "show", "dev", dev, netns=netns))[0]

    def counters(self) -> dict[str, int]:
        """What the two shapers have counted so far: ``up_bytes``, ``down_bytes``, ``drops``."""
        up = self._qdisc(self.shaped.host_if, None)
        down = self._qdisc(self.shaped.ns_if, self.netns)
        return {
            "up_bytes": up["bytes"],
            "down_bytes": down["bytes"],
            "drops": up["drops"] + down["drops"],
        }

    def drain_uplink(self) -> int:
        """Empty the uplink's bucket with padding (call after :meth:`refill_s` of idle time)."""
        return send_padding(self._pad_socket, self.host_pad_ip, self.up_burst)

    def refill_s(self) -> float:
        """Idle time after which both buckets are full again (with a margin)."""
        full = max(
            self.up_burst * 8 / (self.up_mbps * 1e6), self.down_burst * 8 / (self.down_mbps * 1e6)
        )
        return 1.5 * full + 0.002


@contextlib.contextmanager
def shaped_link(up_mbps: float = 10.0, down_mbps: float | None = None) -> Iterator[ShapedLink]:
    """A namespace reachable over a TBF-shaped veth pair and an unshaped reference pair.

    Everything is removed on exit, even after an error.

    Raises:
        LinkEmulationError: where TBF (or root, or iproute2) is missing.
    """
    ok, why = shaping_available()
    if not ok:
        raise LinkEmulationError(f"Cannot shape a link here: {why}.")
    with _namespace() as (netns, prefix):
        link = ShapedLink(netns, _add_veth(netns, prefix, "s"), _add_veth(netns, prefix, "r"))
        try:
            for ip, mac, dev, ns in (
                (link.host_pad_ip, _PAD_MACS[0], link.shaped.host_if, None),
                (link.ns_pad_ip, _PAD_MACS[1], link.shaped.ns_if, netns),
            ):
                _ip("neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent", netns=ns)
            link.shape(up_mbps, down_mbps)
            yield link
        finally:
            link._pad_socket.close()
