"""FromDevice/ToDevice on AF_PACKET, inside network namespaces, as the agent runs them.

Two private namespaces joined by a veth pair: the router runs in one (through
``python -m clickos_agent.click.run``, as an emulated ClickOS instance), a
sender in the other sends a frame and waits for the router's answer.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2")

SENDER = textwrap.dedent("""
    import socket, sys, time
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    sock.bind((sys.argv[1], 3))
    sock.settimeout(1.0)
    frame = bytes.fromhex("020000000002" "020000000001" "88b5") + b"clicksteer" + bytes(40)
    sock.send(frame)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65536)
        except socket.timeout:
            continue
        if addr[2] != socket.PACKET_OUTGOING and data[12:14] == b"\\x88\\xb5":
            print(data.hex())
            sys.exit(0)
    sys.exit(1)
""")


def read_handler(control_socket: Path, name: str) -> bytes:
    """One READ over Click's ControlSocket protocol."""
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(control_socket))
        stream = sock.makefile("rb")
        stream.readline()                       # the greeting
        sock.sendall(f"READ {name}\r\n".encode())
        assert stream.readline().startswith(b"200 ")
        size = int(stream.readline().split()[1])  # DATA n
        return stream.read(size)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, str, str]]:
    """(router namespace, its interface, sender namespace, its interface); removed afterwards."""
    tag = secrets.token_hex(3)
    ns_r, ns_s = f"csclk{tag}r", f"csclk{tag}s"
    if_r, if_s = f"csclk{tag}a", f"csclk{tag}b"
    created: list[str] = []
    try:
        for ns in (ns_r, ns_s):
            ip("netns", "add", ns)
            created.append(ns)
            # no IPv6 chatter (router solicitations) on the test link
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            "net.ipv6.conf.all.disable_ipv6=1",
                            "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        ip("link", "add", if_r, "netns", ns_r, "type", "veth", "peer", "name", if_s, "netns", ns_s)
        ip("-n", ns_r, "link", "set", if_r, "up")
        ip("-n", ns_s, "link", "set", if_s, "up")
        yield ns_r, if_r, ns_s, if_s
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("path", ["FromDevice(0) -> c :: Counter -> EtherMirror -> Queue -> ToDevice(0)",
                                  "FromDevice(0) -> c :: Counter -> Queue -> EtherMirror "
                                  "-> t :: ToDevice(0)"])
def test_router_in_a_namespace_answers_and_never_reads_its_own_frames(
        tmp_path: Path, namespaces: tuple[str, str, str, str], path: str) -> None:
    ns_r, if_r, ns_s, if_s = namespaces
    config = tmp_path / "mirror.click"
    config.write_text(path + ";\n")
    ready, ctl = tmp_path / "ready", tmp_path / "ctl"
    router = subprocess.Popen(
        ["ip", "netns", "exec", ns_r, sys.executable, "-m", "clickos_agent.click.run", str(config),
         "--device", f"0={if_r}", "--control-socket", str(ctl), "--ready-file", str(ready)],
        cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and router.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), router.stderr.read() if router.stderr else ""
        sender = subprocess.run(["ip", "netns", "exec", ns_s, sys.executable, "-c", SENDER, if_s],
                                capture_output=True, text=True, timeout=120)
        assert sender.returncode == 0, sender.stderr
        answer = bytes.fromhex(sender.stdout.strip())
        assert answer[:12] == bytes.fromhex("020000000001" "020000000002")
        assert answer[12:24] == bytes.fromhex("88b5") + b"clicksteer"
        # one frame in: the mirrored frame it sent was not read back as input
        assert read_handler(ctl, "c.count") == b"1"
    finally:
        router.terminate()
        router.wait(60)
        if router.stderr:
            router.stderr.close()
