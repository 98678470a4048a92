"""Click's ControlSocket protocol (version 1.3) on a Unix socket.

The server lives inside the router's loop: its sockets are readers of the
router's selector, so handlers run on the router thread between packets and
need no locking.  Replies follow Click's elements/userlevel/controlsocket.cc:
a greeting line ``Click::ControlSocket/1.3``, then per command one or more
``CODE text`` lines (``CODE-text`` for continuation lines) and, for reads,
``DATA n`` followed by n bytes.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from clickos_agent.click.element import HandlerError

if TYPE_CHECKING:
    from clickos_agent.click.runtime import Router

PROTOCOL_VERSION = "1.3"
OK = 200
OK_WARNING = 220
SYNTAX = 500
UNIMPLEMENTED = 501
NO_SUCH_ELEMENT = 510
NO_SUCH_HANDLER = 511
HANDLER_ERROR = 520
PERMISSION = 530
UNSPECIFIED = 590

_HELP = [
    "Commands supported:",
    "READ handler [arg...]   call read handler, return DATA",
    "READDATA handler len    call read handler with len data bytes, return DATA",
    "WRITE handler [arg...]  call write handler",
    "WRITEDATA handler len   call write handler, pass len data bytes",
    "CHECKREAD handler       check if read handler is valid",
    "CHECKWRITE handler      check if write handler is valid",
    "QUIT                    close connection",
]


def _error_code(error: HandlerError) -> int:
    from clickos_agent.click.runtime import (
        NoSuchElement,
        NoSuchHandler,
        PermissionDenied,
    )
    if isinstance(error, NoSuchElement):
        return NO_SUCH_ELEMENT
    if isinstance(error, NoSuchHandler):
        return NO_SUCH_HANDLER
    if isinstance(error, PermissionDenied):
        return PERMISSION
    return 0


class _Connection:
    def __init__(self, server: ControlSocketServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.inbuf = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()

    def message(self, code: int, text: str, continuation: bool = False) -> None:
        self.send(f"{code}{'-' if continuation else ' '}{text}\r\n".encode("utf-8", "replace"))

    def messages(self, code: int, head: str, details: list[str]) -> None:
        """``head`` then detail lines, all but the last marked as continued."""
        lines = [head + (":" if details else "")] + details
        for i, line in enumerate(lines):
            self.message(code, line, i < len(lines) - 1)

    def readable(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        self.inbuf += chunk
        self.process()

    def process(self) -> None:
        while not self.closed:
            end = self.inbuf.find(b"\n")
            if end < 0:
                return
            line = self.inbuf[:end].decode("utf-8", "replace").rstrip("\r")
            words = line.split()
            if words and words[0].upper() in ("READDATA", "WRITEDATA", "SETDATA") \
                    and len(words) == 3 and words[2].isdigit():
                need = int(words[2])
                if len(self.inbuf) - end - 1 < need:
                    return      # wait for the data bytes
                data = self.inbuf[end + 1:end + 1 + need].decode("utf-8", "replace")
                self.inbuf = self.inbuf[end + 1 + need:]
                self.command(line, words, data)
            else:
                self.inbuf = self.inbuf[end + 1:]
                self.command(line, words, None)

    def command(self, line: str, words: list[str], data: str | None) -> None:
        if not words:
            return
        command = words[0].upper()
        if command in ("READ", "GET", "WRITE", "SET"):
            if len(words) < 2:
                self.message(SYNTAX, "Wrong number of arguments")
                return
            rest = ""
            if len(words) > 2:
                start = line.index(words[2], line.index(words[1]) + len(words[1]))
                rest = line[start:].rstrip()
            if command[0] in "RG":
                self.read(words[1], rest)
            else:
                self.write(words[1], rest)
        elif command in ("READDATA", "WRITEDATA", "SETDATA"):
            if len(words) != 3:
                self.message(SYNTAX, "Wrong number of arguments")
            elif data is None:
                self.message(SYNTAX, f"Syntax error in '{command}'")
            elif command[0] == "R":
                self.read(words[1], data)
            else:
                self.write(words[1], data)
        elif command in ("CHECKREAD", "CHECKWRITE"):
            if len(words) != 2:
                self.message(SYNTAX, "Wrong number of arguments")
            else:
                self.check(words[1], command == "CHECKWRITE")
        elif command in ("CLOSE", "QUIT"):
            if len(words) != 1:
                self.message(SYNTAX, "Bad command syntax")
            self.message(OK, "Goodbye!")
            self.close()
        elif command == "HELP":
            for i, text in enumerate(_HELP):
                self.message(OK, text, i < len(_HELP) - 1)
        else:
            self.message(UNIMPLEMENTED, f"Command '{command}' unimplemented")

    def read(self, name: str, param: str) -> None:
        try:
            value = self.server.router.read_handler(name, param)
        except Exception as e:  # noqa: BLE001 - a handler's bug is the caller's error, not ours
            self.failed(e, UNSPECIFIED, f"Read handler '{name}' error")
            return
        payload = value.encode("utf-8", "surrogateescape")
        self.send(f"{OK} Read handler '{name}' OK\r\nDATA {len(payload)}\r\n".encode()
                  + payload)

    def write(self, name: str, value: str) -> None:
        try:
            self.server.router.write_handler(name, value)
        except Exception as e:  # noqa: BLE001 - a handler's bug is the caller's error, not ours
            self.failed(e, HANDLER_ERROR, f"Write handler '{name}' error")
            return
        self.message(OK, f"Write handler '{name}' OK")

    def failed(self, error: Exception, code: int, head: str) -> None:
        """A handler call's error: a lookup or permission error under its own code, any
        other under ``code`` as ``head`` and a detail line (an element bug's with its type)."""
        if not isinstance(error, HandlerError):
            self.messages(code, head, [f"{type(error).__name__}: {error}"])
        elif specific := _error_code(error):
            self.message(specific, str(error))
        else:
            self.messages(code, head, [str(error)])

    def check(self, name: str, write: bool) -> None:
        router = self.server.router
        try:
            elem, hname = router._split_handler(name)
        except HandlerError as e:
            self.message(_error_code(e), str(e))
            return
        handlers = router.write_handlers_of(elem) if write else router.read_handlers_of(elem)
        other = router.read_handlers_of(elem) if write else router.write_handlers_of(elem)
        if hname in handlers:
            self.message(OK, f"{'Write' if write else 'Read'} handler '{name}' OK")
        elif hname in other:
            self.message(NO_SUCH_HANDLER,
                         f"Handler '{name}' {'not writable' if write else 'not readable'}")
        else:
            self.message(NO_SUCH_HANDLER, f"No handler named '{name}'")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.router.remove_reader(self.sock.fileno())
        self.server.connections.discard(self)
        self.sock.close()


class ControlSocketServer:
    """Listens on ``path`` and serves the router's handlers to each connection."""

    def __init__(self, router: Router, path: str) -> None:
        self.router = router
        self.path = path
        self.connections: set[_Connection] = set()
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.listener.setblocking(False)
        router.add_reader(self.listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        # replies are small; a blocking send with a timeout keeps one stuck
        # client from wedging the router for long
        sock.settimeout(1.0)
        conn = _Connection(self, sock)
        self.connections.add(conn)
        conn.send(f"Click::ControlSocket/{PROTOCOL_VERSION}\r\n".encode())
        self.router.add_reader(sock.fileno(), conn.readable)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()
        self.router.remove_reader(self.listener.fileno())
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
