"""`pneumoscan serve` refuses a busy port or a bad address in one line, before loading the model."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pneumoscan.cli import main


def test_busy_port_is_one_line(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tiny_run), "--port", str(port), "--log-level", "critical"]) == 2
    captured = capsys.readouterr()
    assert f"127.0.0.1:{port}: cannot listen here" in captured.err and "another --port" in captured.err
    assert "serving on" not in captured.out and "Traceback" not in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port 70000: must be between 0 and 65535"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: unknown address"),
    (["--slots", "0"], "--slots 0: must be at least 1"),
])
def test_bad_address_is_one_line(argv: list[str], message: str, tiny_run: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", str(tiny_run), "--log-level", "critical", *argv]) == 2
    assert message in capsys.readouterr().err
