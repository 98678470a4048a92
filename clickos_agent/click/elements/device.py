"""FromDevice and ToDevice on Linux AF_PACKET sockets (the emulated ClickOS netfront).

A ClickOS configuration names devices by number (``FromDevice(0)``); the router
maps that to a Linux interface (``Router.device``).  FromDevice ignores frames
its socket reports as outgoing, so a router never reads its own transmissions
(ToDevice sends on a socket of its own that receives nothing).
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from typing import TYPE_CHECKING

from clickos_agent.click.args import Spec, parse_keywords, parse_string, parse_word
from clickos_agent.click.element import ArgError, Element, element_class
from clickos_agent.click.elements.common import bool_arg, int32_arg, uint_arg
from clickos_agent.click.elements.dump import force_ip
from clickos_agent.click.packet import Packet
from clickos_agent.click.pcap import LINKTYPE_ETHERNET

if TYPE_CHECKING:
    from clickos_agent.click.runtime import Router

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
# METHODs a Linux build of Click without pcap or netmap accepts ("" is the default)
_METHODS = ("", "LINUX")


def open_packet_socket(ifname: str, receive: bool, promisc: bool = False) -> socket.socket:
    """A non-blocking raw AF_PACKET socket on ``ifname``; it receives every protocol if ``receive``.

    The socket is created with protocol 0 and given ETH_P_ALL only at bind:
    creating it with ETH_P_ALL hooks it on every interface first, and moving
    the hook at bind waits for an RCU grace period (~10 ms), which would cost
    an instance's boot time.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, ETH_P_ALL if receive else 0))
        if promisc:
            index = socket.if_nametoindex(ifname)
            mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _DeviceElement(Element):
    """What FromDevice and ToDevice share: a packet socket on the host interface
    that DEVNAME names, opened at initialize and closed at cleanup."""

    def _set_device(self, devname: str) -> None:
        self.devname = devname
        self.ifname = devname   # until the router maps DEVNAME to the host's interface
        self.count = 0
        self.drops = 0
        self._sock: socket.socket | None = None
        self._router: Router | None = None

    def _open(self, router: Router, receive: bool, promisc: bool = False) -> socket.socket:
        self._router = router
        self.ifname = router.device(self.devname)
        try:
            self._sock = open_packet_socket(self.ifname, receive, promisc)
        except OSError as e:
            raise ArgError(f"{self.ifname}: {e.strerror}") from None
        return self._sock

    def cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@element_class
class FromDevice(_DeviceElement):
    """Pushes frames received on a network interface."""

    class_name = "FromDevice"
    port_count = "0/1-2"
    processing = "h/h"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [
            Spec("DEVNAME", parse_string, mandatory=True, positional=True),
            Spec("PROMISC", bool_arg, positional=True, default=False),
            Spec("SNAPLEN", uint_arg, positional=True, default=2046),
            Spec("SNIFFER", bool_arg), Spec("FORCE_IP", bool_arg, default=False),
            Spec("METHOD", parse_word, default=""), Spec("CAPTURE", parse_word),
            Spec("BPF_FILTER", parse_string), Spec("OUTBOUND", bool_arg, default=False),
            Spec("HEADROOM", uint_arg, default=0), Spec("ENCAP", parse_word),
            Spec("BURST", int32_arg, default=1), Spec("TIMESTAMP", bool_arg, default=True)])
        # Click checks these ranges at configure time
        if not 14 <= v["SNAPLEN"] <= 65535:
            raise ArgError("SNAPLEN out of range")
        if v["HEADROOM"] > 8190:
            raise ArgError("HEADROOM out of range")
        if v["BURST"] <= 0:
            raise ArgError("BURST out of range")
        # the CAPTURE spelling is deprecated; this build of Click captures with LINUX only
        if (v["CAPTURE"] if v["CAPTURE"] is not None else v["METHOD"]) not in _METHODS:
            raise ArgError("bad METHOD")
        # Click finds an empty DEVNAME at initialize, whatever the host: the
        # checker, which does not initialize, rejects it here
        if not v["DEVNAME"]:
            raise ArgError("interface not set")
        self._set_device(v["DEVNAME"])
        self.promisc: bool = v["PROMISC"]
        self.snaplen: int = v["SNAPLEN"]
        self.force_ip: bool = v["FORCE_IP"]
        self.outbound: bool = v["OUTBOUND"]
        self.timestamp: bool = v["TIMESTAMP"]
        self.read_handlers.update({"count": lambda: str(self.count),
                                   "kernel_drops": lambda: "0",
                                   "encap": lambda: "ETHER"})
        self.write_handlers["reset_counts"] = self._reset

    def _reset(self, _value: str) -> None:
        self.count = 0

    def initialize(self, router: Router) -> None:
        sock = self._open(router, True, self.promisc)
        router.add_reader(sock.fileno(), self._readable)
        router.add_live_source()

    def cleanup(self) -> None:
        if self._sock is not None and self._router is not None:
            self._router.remove_reader(self._sock.fileno())
        super().cleanup()

    def _readable(self) -> None:
        """Receive what is waiting (bounded, so other sources get a turn) and push it."""
        sock = self._sock
        if sock is None:
            return
        out = self.out[0]
        outbound = self.outbound
        snaplen = self.snaplen
        for _ in range(256):
            try:
                data, address = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                print(f"{self.name}: {e}", file=sys.stderr)
                return
            if address[2] == PACKET_OUTGOING and not outbound:
                continue
            packet = Packet(data[:snaplen], ts_ns=time.time_ns() if self.timestamp else 0)
            packet.mac_off = packet.off
            if len(data) > snaplen:
                packet.extra_len = len(data) - snaplen
            if self.force_ip and not force_ip(packet, LINKTYPE_ETHERNET):
                self.checked_push(1, packet)
                continue
            self.count += 1
            out(packet)


@element_class
class ToDevice(_DeviceElement):
    """Sends packets out of a network interface: a task pulls them from its input
    (user-level Click's ToDevice is ``l/h``, so a push source needs a Queue first)."""

    class_name = "ToDevice"
    port_count = "1/0-2"
    processing = "l/h"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [
            Spec("DEVNAME", parse_string, mandatory=True, positional=True),
            Spec("BURST", int32_arg, default=1), Spec("DEBUG", bool_arg, default=False),
            Spec("METHOD", parse_word, default="")])
        if not v["DEVNAME"]:
            raise ArgError("interface not set")
        if v["BURST"] <= 0:
            raise ArgError("bad BURST")
        if v["METHOD"] not in _METHODS:
            raise ArgError("bad METHOD")
        self._set_device(v["DEVNAME"])
        self.burst: int = v["BURST"]
        self.read_handlers.update({"count": lambda: str(self.count),
                                   "drops": lambda: str(self.drops)})
        self.write_handlers["reset_counts"] = self._reset

    def _reset(self, _value: str) -> None:
        self.count = 0
        self.drops = 0

    def initialize(self, router: Router) -> None:
        self._open(router, False)
        router.add_task(self._run)

    def _send(self, packet: Packet) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.send(memoryview(packet.buf)[packet.off:])
            self.count += 1
        except OSError:
            # a full device queue or a down link drops the packet, as a NIC would
            self.drops += 1

    def _run(self) -> bool:
        pull = self.pull_in[0]
        sent = 0
        while sent < self.burst:
            packet = pull()
            if packet is None:
                break
            self._send(packet)
            sent += 1
        return sent > 0
