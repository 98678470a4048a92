"""Interface settings by ioctl, for speed: no ``ip``/``ethtool`` process per instance.

Used by router processes on their own interfaces right after entering their
namespace, and by the agent on the host-side ends.  topologies/netns.py stays
the module that runs the ``ip``/``ethtool`` tools; this one only does the few
settings an instance boot needs, in microseconds instead of milliseconds.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCETHTOOL = 0x8946
SIOCSIFHWADDR = 0x8924
ARPHRD_ETHER = 1
IFF_UP = 0x1
ETHTOOL_STXCSUM = 0x17   # set TX checksum offload (struct ethtool_value)
IFNAMSIZ = 16


def _ifreq(name: str, payload: bytes) -> bytes:
    return struct.pack(f"{IFNAMSIZ}s", name.encode()) + payload.ljust(24, b"\0")


def set_up(name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        got = fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name, b""))
        flags = struct.unpack_from("H", got, IFNAMSIZ)[0]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_UP)))


def tx_checksum_off(name: str) -> None:
    """``ethtool -K NAME tx off``: TCP through OVS's userspace datapath needs it (DESIGN.md)."""
    value = (ctypes.c_uint32 * 2)(ETHTOOL_STXCSUM, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCETHTOOL, _ifreq(name, struct.pack("P", ctypes.addressof(value))))


def disable_ipv6(name: str) -> None:
    """No IPv6 on the interface, so an instance sends no chatter (RS, DAD) into the fabric.

    ``/proc/sys/net`` shows the network namespace of the process that opens it.
    """
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as handle:
        handle.write("1")



def set_mac(name: str, mac: str) -> None:
    """Set an interface's MAC address (while it is down, as veths require)."""
    address = bytes.fromhex(mac.replace(":", ""))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFHWADDR, _ifreq(name, struct.pack("H", ARPHRD_ETHER) + address))
