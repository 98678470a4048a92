"""``clicksteer chains ...`` against a real HTTP server (the API in a thread, fake switches and agents),
and ``clicksteer controller`` refusing bad start-up arguments."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickos_agent.httpapi import ApiServer
from controller.api import build_api
from controller.cli import main
from test_controller_service import TOPO, WEB, serving_service

TOKEN = "cli-token"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    service, _agent = serving_service()
    api = ApiServer(build_api(service, TOKEN), "127.0.0.1", 0).start()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    yield api.address, token_file
    api.stop()


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_apply_list_show_delete(server: tuple[str, Path], tmp_path: Path, capsys: Any) -> None:
    address, token_file = server
    chain_file = tmp_path / "web.yaml"
    chain_file.write_text(WEB)
    common = ("--api", address, "--token-file", str(token_file))
    code, out, _ = run(capsys, "chains", "apply", str(chain_file), *common)
    assert code == 0
    assert out.splitlines() == ["NAME  ACTION   STATE   REASON", "web   created  active"]
    code, out, _ = run(capsys, "chains", "apply", str(chain_file), *common)     # idempotent
    assert code == 0 and out.splitlines()[1] == "web   replaced  active"
    code, out, _ = run(capsys, "chains", "list", *common)
    assert out.splitlines() == ["NAME  STATE   PRIORITY  INSTANCES  HOPS         REASON",
                                "web   active  100       3          fw,mon,pass"]
    code, out, _ = run(capsys, "chains", "show", "web", *common)
    lines = out.splitlines()
    assert lines[0] == "chain web: active"
    assert lines[2].split() == ["HOP", "FUNCTION", "INSTANCE", "COMPUTE", "STATE", "IN", "OUT", "DROP", "PPS"]
    # No statistics poller runs here: the rate is unknown, shown as "-".
    assert lines[3].split() == ["fw", "firewall", "web-fw-0", "compute1", "running", "7", "7", "-", "-"]
    code, out, _ = run(capsys, "chains", "events", "web", *common)
    assert (code, out.split()) == (0, ["TIME", "HOP", "ACTION", "INSTANCES", "INSTANCE", "REASON"])
    code, out, _ = run(capsys, "chains", "delete", "web", *common)
    assert (code, out) == (0, "chain web deleted\n")
    code, _, err = run(capsys, "chains", "show", "web", *common)
    assert code == 1 and "404" in err


def test_apply_reports_file_errors_with_positions(server: tuple[str, Path], tmp_path: Path, capsys: Any) -> None:
    address, token_file = server
    chain_file = tmp_path / "bad.yaml"
    chain_file.write_text(WEB.replace("function: monitor", "function: nosuch"))
    code, out, err = run(capsys, "chains", "apply", str(chain_file), "--api", address, "--token-file", str(token_file))
    assert code == 2 and out == ""
    assert f"{chain_file}:7:" in err


def test_changes_without_the_token_are_refused(server: tuple[str, Path], capsys: Any) -> None:
    address, _ = server
    code, _, err = run(capsys, "chains", "delete", "web", "--api", address)
    assert code == 1 and "401" in err and "Authorization" in err


def test_unreachable_controller(capsys: Any) -> None:
    code, _, err = run(capsys, "chains", "list", "--api", "127.0.0.1:1")
    assert code == 1 and "cannot reach the controller" in err


def _controller(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", "controller", *argv], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent, timeout=60)


def test_controller_refuses_bad_start_up(tmp_path: Path) -> None:
    proc = _controller("--topology", str(tmp_path / "none.yaml"))
    assert proc.returncode == 2 and "none.yaml" in proc.stderr
    bad_chains = tmp_path / "bad.yaml"
    bad_chains.write_text(WEB.replace("function: monitor", "function: nosuch"))
    proc = _controller("--topology", str(TOPO), "--chains", str(bad_chains), "--openflow", "127.0.0.1:0")
    assert proc.returncode == 2 and f"{bad_chains}:7:" in proc.stderr
    proc = _controller("--topology", str(TOPO), "--openflow", "nonsense")
    assert proc.returncode == 1 and "HOST:PORT" in proc.stderr
