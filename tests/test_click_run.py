"""The Click runtime: pcap I/O, graph instantiation, scheduling, handlers,
the ControlSocket protocol, the ``run`` entry point and ``clicksteer click run``."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clickos_agent.click.graph import Connection, ElementDecl, RouterGraph
from clickos_agent.click.packet import Packet
from clickos_agent.click.pcap import PcapReader, PcapWriter, read_pcap, write_pcap
from clickos_agent.click.runtime import Router, RouterError, run_in_thread
from controller.cli import main as clicksteer

FRAME = bytes.fromhex("020000000002" "020000000001" "0800") + bytes(46)
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- pcap

@pytest.mark.parametrize("nano", [False, True])
def test_pcap_round_trip_keeps_timestamps_and_lengths(tmp_path: Path, nano: bool) -> None:
    path = str(tmp_path / "x.pcap")
    with PcapWriter(path, nanosecond=nano) as writer:
        writer.write(1_700_000_000_123_456_000, b"abc", orig_len=10)
        writer.write(5, b"")
    with PcapReader(path) as reader:
        assert reader.nanosecond == nano and reader.linktype == 1
        records = list(reader)
    assert records[0] == (1_700_000_000_123_456_000, b"abc", 10)
    assert records[1] == ((5 if nano else 0), b"", 0)


def test_pcap_reads_big_endian_files(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    path.write_bytes(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack(">IIII", 7, 8, 2, 2) + b"hi")
    assert read_pcap(str(path)) == [(7_000_008_000, b"hi")]


def test_pcap_truncated_last_record_ends_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write_pcap(str(path), [b"abcdef"])
    path.write_bytes(path.read_bytes()[:-2])
    assert read_pcap(str(path)) == []


# ---------------------------------------------------------------- building

def test_router_from_a_hand_built_graph(tmp_path: Path) -> None:
    write_pcap(str(tmp_path / "in.pcap"), [FRAME] * 3)
    graph = RouterGraph()
    for name, cls, config in [("src", "FromDump", f"{tmp_path}/in.pcap"), ("c", "Counter", ""),
                              ("dst", "ToDump", f"{tmp_path}/out.pcap")]:
        graph.elements[name] = ElementDecl(name, cls, config, 1, 1)
    graph.connections += [Connection("src", 0, "c", 0, 1, 1), Connection("c", 0, "dst", 0, 1, 1)]
    router = Router.from_graph(graph)
    router.run()
    router.cleanup()
    assert router.read_handler("c.count") == "3"
    assert [d for _, d in read_pcap(str(tmp_path / "out.pcap"))] == [FRAME] * 3


def test_push_to_pull_mismatch_is_an_error() -> None:
    with pytest.raises(RouterError, match="mixed context"):
        Router.from_text("q :: Queue -> Counter -> Queue -> Discard; Idle -> q")
    # the runtime checks graphs that did not come through the checker too
    graph = RouterGraph()
    for name, cls in [("q", "Queue"), ("q2", "Queue"), ("i", "Idle"), ("d", "Discard")]:
        graph.elements[name] = ElementDecl(name, cls, "", 1, 1)
    graph.connections += [Connection("i", 0, "q", 0, 1, 1), Connection("q", 0, "q2", 0, 1, 1),
                          Connection("q2", 0, "d", 0, 1, 1)]
    with pytest.raises(RouterError, match="pull output 0 connected to 'q2' push input 0"):
        Router.from_graph(graph)


def test_agnostic_elements_take_the_processing_of_their_neighbours() -> None:
    router = Router.from_text("Idle -> Queue -> c :: Counter -> d :: Discard")
    assert router.read_handler("c.ports") == "1 input\npull~\t-\tQueue@2 [0]\n1 output\npull~\t-\t[0] d\n"
    assert router.elements["d"].input_is_pull(0)
    router.cleanup()


def test_unknown_class_and_unused_ports_are_errors() -> None:
    with pytest.raises(RouterError):
        Router.from_text("Idle -> NoSuchElement -> Discard")
    with pytest.raises(RouterError, match="input 0 unused"):
        Router.from_text("Counter -> Discard")


def test_missing_dump_file_fails_at_initialize(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="While initializing"):
        Router.from_text(f"FromDump({tmp_path}/missing.pcap) -> Discard")


# ---------------------------------------------------------------- running

def test_stop_true_ends_the_run_and_unfinished_sources_keep_it_going(tmp_path: Path) -> None:
    write_pcap(str(tmp_path / "a.pcap"), [FRAME] * 2)
    router = Router.from_text(f"FromDump({tmp_path}/a.pcap, STOP true) -> c :: Counter -> Discard")
    router.run(until_done=False)     # returns only because STOP asks the router to stop
    assert router.read_handler("c.count") == "2"
    router.cleanup()


def test_stop_from_another_thread_wakes_an_idle_router() -> None:
    router = Router.from_text("Idle -> Queue -> Discard")
    thread = run_in_thread(router, until_done=False)
    router.stop()
    thread.join(30)
    assert not thread.is_alive()
    router.cleanup()


def test_global_handlers(tmp_path: Path) -> None:
    router = Router.from_text("a :: Idle -> b :: Discard")
    assert router.read_handler("version") == "2.1"
    assert router.read_handler("list") == "2\na\nb\n"
    assert router.read_handler("b.class") == "Discard"
    assert "count\tr" in router.read_handler("b.handlers")
    assert router.read_handler("1.name") == "a"
    router.cleanup()


def test_handler_errors_have_kinds() -> None:
    from clickos_agent.click.runtime import (
        NoSuchElement,
        NoSuchHandler,
        PermissionDenied,
    )
    router = Router.from_text("c :: Counter; Idle -> c -> Discard")
    with pytest.raises(NoSuchElement):
        router.read_handler("x.count")
    with pytest.raises(NoSuchHandler):
        router.read_handler("c.nothing")
    with pytest.raises(PermissionDenied):
        router.read_handler("c.reset")
    with pytest.raises(PermissionDenied):
        router.write_handler("c.count", "1")
    router.cleanup()


def test_packet_push_grows_headroom_and_moves_header_offsets() -> None:
    packet = Packet(b"abcdef", headroom=2)
    packet.ip_off = packet.off + 2
    packet.push(5)
    assert packet.data == bytes(5) + b"abcdef"
    assert packet.buf[packet.ip_off] == ord("c")
    packet.pull(100)
    assert len(packet) == 0


# ---------------------------------------------------------------- ControlSocket

class ControlClient:
    """A minimal client of Click's ControlSocket protocol."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline().decode()

    def command(self, line: str) -> tuple[int, list[str], bytes | None]:
        self.sock.sendall(line.encode() + b"\r\n")
        lines = []
        while True:
            text = self.file.readline().decode().rstrip("\r\n")
            lines.append(text[4:])
            if text[3] == " ":
                break
        data = None
        if line.split()[0].upper() in ("READ", "READDATA") and text.startswith("200"):
            header = self.file.readline().decode()
            assert header.startswith("DATA ")
            data = self.file.read(int(header.split()[1]))
        return int(text[:3]), lines, data

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_control_socket_speaks_clicks_protocol(tmp_path: Path) -> None:
    write_pcap(str(tmp_path / "in.pcap"), [FRAME] * 4)
    path = str(tmp_path / "ctl")
    router = Router.from_text(f"FromDump({tmp_path}/in.pcap) -> c :: Counter -> q :: Queue -> Idle",
                              control_socket=path)
    thread = run_in_thread(router)
    client = ControlClient(path)
    try:
        assert client.greeting == "Click::ControlSocket/1.3\r\n"
        code, lines, data = client.command("READ c.count")
        assert code == 200 and lines == ["Read handler 'c.count' OK"]
        assert data in (b"0", b"4")       # the source may not have run yet
        assert client.command("READ nope.count")[:2] == (510, ["No element named 'nope'"])
        assert client.command("READ c.nope")[:2] == (511, ["No handler named 'c.nope'"])
        assert client.command("WRITE c.count 3")[0] == 530
        assert client.command("WRITE c.reset")[:2] == (200, ["Write handler 'c.reset' OK"])
        code, lines, _ = client.command("WRITE q.capacity bogus")
        assert code == 520 and lines[0] == "Write handler 'q.capacity' error:"
        assert client.command("READ version")[2] == b"2.1"
        client.sock.sendall(b"WRITEDATA q.capacity 2\r\n17")
        assert client.file.readline() == b"200 Write handler 'q.capacity' OK\r\n"
        assert client.command("READ q.capacity")[2] == b"17"
        assert client.command("CHECKREAD c.count")[0] == 200
        assert client.command("CHECKWRITE c.count")[:2] == (511, ["Handler 'c.count' not writable"])
        assert client.command("FROB")[0] == 501
        assert client.command("READ")[0] == 500
        assert client.command("QUIT")[:2] == (200, ["Goodbye!"])
    finally:
        client.close()
        router.stop()
        thread.join(30)
        router.cleanup()
    assert not os.path.exists(path)


# ---------------------------------------------------------------- entry points

def test_clicksteer_click_run_prints_handlers_like_click(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_pcap(str(tmp_path / "in.pcap"), [FRAME] * 3)
    config = tmp_path / "c.click"
    config.write_text(f"FromDump({tmp_path}/in.pcap, STOP true) -> c :: Counter "
                      f"-> ToDump({tmp_path}/out.pcap);\n")
    assert clicksteer(["click", "run", str(config), "-h", "c.count"]) == 0
    assert capsys.readouterr().out == "3\n"
    assert clicksteer(["click", "run", str(config), "-h", "c.count", "-h", "c.byte_count"]) == 0
    assert capsys.readouterr().out == f"c.count:\n3\n\nc.byte_count:\n{3 * len(FRAME)}\n\n"
    assert clicksteer(["click", "run", str(config), "-h", "c.bogus"]) == 1
    assert "No handler named 'c.bogus'" in capsys.readouterr().err


def test_clicksteer_click_run_reports_config_errors(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.click"
    config.write_text("Idle -> Strip -> Discard;\n")
    assert clicksteer(["click", "run", str(config)]) == 1
    assert "bad.click:1:" in capsys.readouterr().err


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``path`` exists or the process dies (no timing is asserted)."""
    deadline = time.monotonic() + 60
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_run_module_writes_ready_file_serves_handlers_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "c.click"
    config.write_text("c :: Counter; Idle -> c -> Discard;\n")
    ready = tmp_path / "ready"
    ctl = tmp_path / "ctl"
    proc = subprocess.Popen([sys.executable, "-m", "clickos_agent.click.run", str(config),
                             "--control-socket", str(ctl), "--ready-file", str(ready)],
                            cwd=REPO, stderr=subprocess.PIPE)
    try:
        _wait_for(ready, proc)
        assert ready.exists(), proc.stderr.read() if proc.stderr else ""
        client = ControlClient(str(ctl))
        assert client.command("READ c.count")[2] == b"0"
        client.close()
    finally:
        proc.terminate()
        code = proc.wait(60)
        if proc.stderr:
            proc.stderr.close()
    assert code == 0


def test_run_router_signals_readiness_on_a_pipe(tmp_path: Path) -> None:
    from clickos_agent.click.run import run_router
    write_pcap(str(tmp_path / "in.pcap"), [FRAME])
    read_fd, write_fd = os.pipe()
    result: list[Router] = []
    thread = threading.Thread(target=lambda: result.append(run_router(
        f"FromDump({tmp_path}/in.pcap, STOP true) -> c :: Counter -> Discard", ready_fd=write_fd)))
    thread.start()
    assert os.read(read_fd, 6) == b"ready\n"
    thread.join(60)
    os.close(read_fd)
    os.close(write_fd)
    assert result[0].read_handler("c.count") == "1"


@pytest.mark.parametrize("config", [
    "Idle -> Queue -> c :: Counter -> Discard",
    "FromDump(x) -> Queue -> t :: PullTee -> ToDump(y); t[1] -> Counter -> Discard",
    "FromDump(x) -> c :: CheckIPHeader -> q :: Queue -> u :: Unqueue -> ToDump(y); c[1] -> q",
    "i :: Idle; i -> Queue -> i; i[1] -> Print -> Discard",
    "FromDevice(0) -> Strip(14) -> Queue -> Unstrip(14) -> ToDevice(0)",
])
def test_runtime_resolves_push_and_pull_as_the_checker_does(config: str) -> None:
    from clickos_agent.click.check import check
    result = check(config)
    assert result.ok, result.errors
    graph = result.graph
    # build without initializing: the files and devices named here do not exist
    router = Router()
    router.graph = graph
    router._build(graph)
    for name, (ins, outs) in result.modes.items():
        elem = router.elements[name]
        assert ("".join(elem.input_modes), "".join(elem.output_modes)) == (ins, outs), name
    router.cleanup()


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
def test_compressed_dumps_are_read_and_written_like_clicks(tmp_path: Path, suffix: str) -> None:
    write_pcap(str(tmp_path / f"in.pcap{suffix}"), [FRAME, FRAME[:20]])
    router = Router.from_text(f"FromDump({tmp_path}/in.pcap{suffix}) -> ToDump({tmp_path}/out{suffix})")
    router.run()
    router.cleanup()
    assert [d for _, d in read_pcap(str(tmp_path / f"out{suffix}"))] == [FRAME, FRAME[:20]]


def test_an_inactive_source_does_not_keep_an_until_done_run_going(tmp_path: Path) -> None:
    write_pcap(str(tmp_path / "in.pcap"), [FRAME] * 2)
    router = Router.from_text(f"f :: FromDump({tmp_path}/in.pcap, ACTIVE false) -> c :: Counter "
                              "-> Discard")
    router.run()
    assert router.read_handler("c.count") == "0"
    router.write_handler("f.active", "true")
    router.run()
    assert router.read_handler("c.count") == "2"
    router.cleanup()


def test_an_element_exception_drops_the_packet_and_the_router_keeps_going(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    short = FRAME[:16]          # DecIPTTL after MarkIPHeader(14) reads beyond this frame
    write_pcap(str(tmp_path / "in.pcap"), [FRAME, short, FRAME])
    router = Router.from_text(f"src :: FromDump({tmp_path}/in.pcap) -> MarkIPHeader(14) "
                              "-> DecIPTTL(ACTIVE true) -> c :: Counter -> Discard")
    router.run()
    assert router.errors == 1
    assert router.read_handler("src.count") == "3"
    assert "packet dropped" in capfd.readouterr().err
    router.cleanup()
