"""Benchmark: the Click runtime on a 5-element middlebox pipeline, pcap to pcap.

The pipeline is classifier -> filter -> counter -> rewrite -> output
(``Classifier``, ``IPFilter``, ``Counter``, ``IPRewriter``,
``ToDump``), fed by ``FromDump``.  The baseline, measured in the same run, is
a loop that only reads the same pcap into packets and writes them out with the
same pcap code.

The last line printed is one JSON object:
``{"bench": "click_runtime", "value": PPS, "unit": "pps", "budget": 50000,
"ratio": R, "ok": ...}``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clickos_agent.click.packet import Packet  # noqa: E402
from clickos_agent.click.pcap import PcapReader, PcapWriter, write_pcap  # noqa: E402
from clickos_agent.click.runtime import Router  # noqa: E402

BUDGET_PPS = 50_000
BUDGET_RATIO = 0.3
PACKETS = 100_000
FLOWS = 1_000
# pipeline and baseline alternate and each keeps its best round, which damps
# the noise of a shared machine
ROUNDS = 5


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def make_trace(path: str, count: int) -> None:
    """UDP and TCP packets of 1,000 flows (a middlebox sees many packets per flow);
    one flow in ten goes to a port the filter drops."""
    packets = []
    for i in range(count):
        flow = i % FLOWS
        proto = 17 if flow % 2 else 6
        dport = 23 if flow % 10 == 0 else 80
        sport = 1024 + flow
        payload = bytes(18)
        if proto == 17:
            l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        else:
            l4 = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 0x50, 0x02, 8192, 0, 0) + payload
        src = bytes([10, 0, flow >> 8, flow & 0xFF])
        dst = bytes([10, 1, 0, 1 + flow % 4])
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64, proto, 0,
                             src, dst)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        ether = bytes.fromhex("020000000002" "020000000001" "0800")
        packets.append((1_700_000_000_000_000_000 + i * 1000, ether + header + l4))
    write_pcap(path, packets)


def pipeline_config(src: str, dst: str) -> str:
    """The 5-element pipeline, pcap ``src`` to pcap ``dst``."""
    return f"""
        src :: FromDump({src}, STOP true);
        cl :: Classifier(12/0800, -); cl[1] -> Discard;
        f :: IPFilter(drop dst port 23, allow all);
        c :: Counter;
        rw :: IPRewriter(pattern 192.168.0.1 1024-65535 - - 0 0);
        out :: ToDump({dst});
        src -> cl -> MarkIPHeader(14) -> f -> c -> rw -> out;
    """


def run_pipeline(config: str) -> tuple[float, int]:
    router = Router.from_text(config, "<bench>")
    start = time.perf_counter()
    router.run(until_done=True)
    elapsed = time.perf_counter() - start
    count = int(router.read_handler("src.count"))
    router.cleanup()
    return elapsed, count


def run_baseline(src: str, dst: str) -> tuple[float, int]:
    """Read every record into a Packet and write it back: the floor of any pipeline."""
    start = time.perf_counter()
    n = 0
    with PcapReader(src) as reader, PcapWriter(dst) as writer:
        write = writer.write
        for ts, data, orig in reader:
            packet = Packet(data, ts_ns=ts)
            write(packet.ts_ns, packet.buf[packet.off:], orig)
            n += 1
    return time.perf_counter() - start, n


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="click-bench-") as tmp:
        src = os.path.join(tmp, "in.pcap")
        make_trace(src, PACKETS)
        config = pipeline_config(src, os.path.join(tmp, "out.pcap"))
        best_pipe = best_base = 0.0
        for _ in range(ROUNDS):
            elapsed, n = run_pipeline(config)
            best_pipe = max(best_pipe, n / elapsed)
            elapsed, n = run_baseline(src, os.path.join(tmp, "base.pcap"))
            best_base = max(best_base, n / elapsed)
    ratio = best_pipe / best_base
    print(f"pipeline: {best_pipe:,.0f} packets/s; baseline read+write: {best_base:,.0f} "
          f"packets/s; ratio {ratio:.2f}")
    ok = best_pipe >= BUDGET_PPS and ratio >= BUDGET_RATIO
    print(json.dumps({"bench": "click_runtime", "value": round(best_pipe), "unit": "pps",
                      "budget": BUDGET_PPS, "ratio": round(ratio, 3), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
