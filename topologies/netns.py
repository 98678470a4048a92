"""Network namespaces and links: the one module that runs ``ip`` and ``ethtool``.

Functions come in two flavours: ones that act at once, and ``*_cmd`` ones that
return a line for ``ip -batch`` so that many operations cost one process
(``batch``).  ``ip -batch`` lines cannot name a namespace, so operations inside
one namespace are a batch of their own (``batch(lines, netns=NS)``); batches
for different namespaces can run side by side (``batch_parallel``).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class NetError(RuntimeError):
    """An ``ip``/``ethtool`` command failed; the message carries the command and its stderr."""


def _check(argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> str:
    if proc.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    return proc.stdout


def run(argv: Sequence[str]) -> str:
    return _check(argv, subprocess.run(list(argv), capture_output=True, text=True))


def run_parallel(jobs: Iterable[tuple[Sequence[str], str | None]]) -> None:
    """Run (argv, standard input) jobs side by side; after all ended, raise NetError for those that failed."""
    procs = []
    for argv, text in jobs:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if text is not None else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append((argv, proc, text))
    failures = []
    for argv, proc, text in procs:
        _, err = proc.communicate(text)
        if proc.returncode != 0:
            failures.append(f"{' '.join(argv)}: {err.strip() or f'exit status {proc.returncode}'}")
    if failures:
        raise NetError("; ".join(failures))


def _batch_job(lines: Sequence[str], netns: str | None, force: bool = False) -> tuple[list[str], str]:
    """``ip -batch -`` and its input; ``force`` goes on past failing lines."""
    argv = ["ip", *(["-n", netns] if netns else []), *(["-force"] if force else []), "-batch", "-"]
    return argv, "\n".join(lines) + "\n"


def batch(lines: Sequence[str], netns: str | None = None, force: bool = False) -> None:
    """Run ``ip`` commands (lines without the leading ``ip``) in one process.

    With ``force`` every line is tried and failures are not raised: for
    clean-up, whose caller checks what is left.
    """
    if not lines:
        return
    argv, text = _batch_job(lines, netns, force)
    proc = subprocess.run(argv, capture_output=True, text=True, input=text)
    if not force:
        _check(argv, proc)


def batch_parallel(batches: dict[str | None, list[str]]) -> None:
    """Run one ``ip -batch`` per namespace (None: the current one), side by side."""
    run_parallel(_batch_job(lines, netns) for netns, lines in batches.items())


# -- namespaces ---------------------------------------------------------------

def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def add_netns_cmd(name: str) -> str:
    return f"netns add {name}"


def del_netns_cmd(name: str) -> str:
    return f"netns delete {name}"


def add_netns(name: str) -> None:
    run(["ip", "netns", "add", name])


def del_netns(name: str) -> None:
    """Delete a namespace (its interfaces go with it, and their veth peers); absent is fine."""
    if netns_exists(name):
        run(["ip", "netns", "delete", name])


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv running ``argv`` inside ``netns`` (for Popen, e.g. a long-running server)."""
    return ["ip", "netns", "exec", netns, *argv]


def exec_in(netns: str, argv: Sequence[str], check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command inside a namespace and wait for it; NetError on failure when ``check``."""
    full = exec_argv(netns, argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check:
        _check(full, proc)
    return proc


# -- links --------------------------------------------------------------------

def link_exists(name: str, netns: str | None = None) -> bool:
    if netns is None:
        return Path("/sys/class/net", name).exists()
    return exec_in(netns, ["ip", "link", "show", "dev", name], check=False).returncode == 0


def add_veth_cmd(name: str, peer: str, mac: str | None = None, peer_mac: str | None = None,
                 peer_netns: str | None = None) -> str:
    """A veth pair ``name``/``peer``; the peer may be born inside ``peer_netns``.

    Creating the peer directly in its namespace lets every namespace use the
    same interface name (``eth0``) without a clash in the current namespace.
    """
    own = f" address {mac}" if mac else ""
    other = f" address {peer_mac}" if peer_mac else ""
    where = f" netns {peer_netns}" if peer_netns else ""
    return f"link add {name}{own} type veth peer name {peer}{other}{where}"


def del_link_cmd(name: str) -> str:
    return f"link delete {name}"


def del_link(name: str, netns: str | None = None) -> None:
    """Delete an interface (a veth takes its peer along); absent is fine."""
    if link_exists(name, netns):
        batch([del_link_cmd(name)], netns)


def delete_links(names: Sequence[str]) -> None:
    """Delete many interfaces at once (a veth takes its peer along); absent ones are skipped.

    One by one, each deletion waits for the kernel to quiesce (~15 ms each).
    Instead, the interfaces join a fresh interface group that is deleted in
    one go, after checking the group holds exactly them; if it does not (some
    other program picked the same group meanwhile), they go one by one.
    """
    present = [name for name in names if link_exists(name)]
    if not present:
        return
    group = _free_group()
    batch([f"link set {name} group {group}" for name in present], force=True)
    members = {line.split(":")[1].strip().split("@")[0]
               for line in run(["ip", "-o", "link", "show", "group", str(group)]).splitlines()}
    if members == set(present):
        batch([f"link delete group {group}"])
    else:
        batch([del_link_cmd(name) for name in present], force=True)


def _free_group() -> int:
    while True:
        group = 0x10000 + secrets.randbelow(2**31 - 0x10000)
        if not run(["ip", "-o", "link", "show", "group", str(group)]).strip():
            return group


def set_up_cmd(name: str, up: bool = True) -> str:
    return f"link set {name} {'up' if up else 'down'}"


def set_up(name: str, up: bool = True, netns: str | None = None) -> None:
    batch([set_up_cmd(name, up)], netns)


def set_address_cmd(name: str, address: str) -> str:
    """``address`` with its prefix, e.g. ``10.0.1.1/16``."""
    return f"addr replace {address} dev {name}"


def no_ipv6_cmd(name: str) -> str:
    """No IPv6 link-local address, so an idle host sends no IPv6 chatter into the fabric."""
    return f"link set {name} addrgenmode none"


def offload_off_argv(name: str, netns: str | None = None) -> list[str]:
    """ethtool in ``netns``: nsenter switches the network namespace only, cheaper than ``ip netns exec``."""
    argv = ["ethtool", "-K", name, "tx", "off"]
    return ["nsenter", f"--net={NETNS_DIR / netns}", *argv] if netns else argv


def offload_off(name: str, netns: str | None = None) -> None:
    """Turn TX checksum offload off: TCP through the userspace datapath needs it (DESIGN.md)."""
    run(offload_off_argv(name, netns))
