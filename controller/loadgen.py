"""Traffic from inside the emulated hosts: sockets in their namespaces, and load for scaling.

Everything runs in threads of the calling process whose sockets live in the
hosts' network namespaces (``ns_socket``), so traffic only ever flows between
the emulated hosts: many short UDP flows (``UdpLoad``) and long-lived TCP
sessions (``TcpSession`` against a ``TcpEchoServer``).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from topologies.netns import NETNS_DIR

CLONE_NEWNET = 0x40000000

FIRST_PORT, LAST_PORT = 20000, 59999   # source ports of the UDP flows, used in turn

T = TypeVar("T")


def setns(namespace: str) -> None:
    """Move the calling thread into a network namespace (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def in_netns(namespace: str, target: Callable[..., T], *args: Any) -> T:
    """Call ``target`` in a fresh thread that entered ``namespace``; its result (or its exception).

    setns(2) changes only the calling thread, so the rest of the process stays
    in the root namespace; sockets made in that thread stay in ``namespace``.
    """
    out: list[Any] = []

    def run() -> None:
        try:
            setns(namespace)
            out.append((True, target(*args)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out.append((False, exc))

    thread = threading.Thread(target=run, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def ns_socket(namespace: str, kind: int) -> socket.socket:
    """A socket (``SOCK_STREAM`` or ``SOCK_DGRAM``) living in ``namespace``, usable from any thread."""
    return in_netns(namespace, socket.socket, socket.AF_INET, kind)


class UdpLoad:
    """``pps`` datagrams per second to ``dst``:``port``, a new flow (source port) every ``per_flow`` datagrams.

    Fresh 5-tuples keep coming, so instances added to a hop get new flows at
    once, while flows already pinned stay where they are.  ``set_rate`` changes
    the offered load on the fly (0 pauses it); ``sent`` counts datagrams.
    """

    def __init__(self, namespace: str, dst: str, port: int, pps: float, per_flow: int = 20,
                 size: int = 100) -> None:
        self.namespace, self.dst, self.port = namespace, dst, port
        self.per_flow, self.payload = per_flow, bytes(size)
        self.pps = pps
        self.sent = 0
        self.started = time.time()       # when the current rate began (wall clock, as the controller's events)
        self._next_port = FIRST_PORT
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"udp-load-{namespace}", daemon=True)
        self._thread.start()

    def set_rate(self, pps: float) -> None:
        self.pps = pps
        self.started = time.time()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _flow(self) -> socket.socket:
        sock = ns_socket(self.namespace, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", self._next_port))
        self._next_port = FIRST_PORT if self._next_port == LAST_PORT else self._next_port + 1
        return sock

    def _run(self) -> None:
        sock = self._flow()
        in_flow = 0
        owed = 0.0
        last = time.monotonic()
        try:
            while not self._stop.wait(0.002):
                now = time.monotonic()
                owed = min(owed + self.pps * (now - last), self.pps * 0.05 + 1)   # no burst after a stall
                last = now
                while owed >= 1:
                    if in_flow == self.per_flow:
                        sock.close()
                        sock, in_flow = self._flow(), 0
                    try:
                        sock.sendto(self.payload, (self.dst, self.port))
                    except OSError:
                        pass     # no neighbour yet, buffer full: offered load is what counts
                    self.sent += 1
                    in_flow += 1
                    owed -= 1
        finally:
            sock.close()


class TcpEchoServer:
    """Echoes every byte of every connection to ``ip``:``port`` inside a namespace."""

    def __init__(self, namespace: str, ip: str, port: int) -> None:
        self.sock = ns_socket(namespace, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, name=f"tcp-echo-{ip}:{port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


class TcpSession:
    """One long-lived TCP connection that sends a numbered message every ``interval`` s and checks its echo.

    ``error`` holds the first failure (a reset, a timeout, a wrong echo); ``echoed`` counts good round trips.
    """

    def __init__(self, namespace: str, dst: str, port: int, interval: float = 0.02, timeout: float = 3.0) -> None:
        self.sock = ns_socket(namespace, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((dst, port))
        self.interval = interval
        self.echoed = 0
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tcp-session-{namespace}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            message = f"{n:08d}".encode() * 8
            try:
                self.sock.sendall(message)
                got = b""
                while len(got) < len(message):
                    chunk = self.sock.recv(len(message) - len(got))
                    if not chunk:
                        raise ConnectionResetError("the server closed the connection")
                    got += chunk
            except OSError as exc:
                self.error = f"after {self.echoed} round trips: {exc!r}"
                return
            if got != message:
                self.error = f"round trip {n}: wrong echo"
                return
            self.echoed += 1
            n += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
