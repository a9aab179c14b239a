"""`pneumoscan serve` refuses a busy port or a bad address in one line, before loading the model."""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pneumoscan.cli import main
from tests.conftest import interrupt_import, serve_at_once


def test_busy_port_is_one_line(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tiny_run), "--port", str(port), "--log-level", "critical"]) == 2
    captured = capsys.readouterr()
    assert f"127.0.0.1:{port}: cannot listen here" in captured.err and "another --port" in captured.err
    assert "serving on" not in captured.out and "Traceback" not in captured.err


POLICY = "(a security policy may forbid it); pass another --port or ask IT support"


@pytest.mark.parametrize(("code", "strerror", "host", "port", "said"), [
    ("EADDRNOTAVAIL", "Cannot assign requested address", "127.0.0.1", 80,
     "127.0.0.1:80: cannot listen here (Cannot assign requested address); --host must be an address of this machine"),
    ("EACCES", "Permission denied", "127.0.0.1", 80, "127.0.0.1:80: cannot listen here (Permission denied); ports "
     "below 1024 need administrator rights: pass --port 1024 or above (such as 8000) behind the proxy"),
    # not a privileged port: a policy (SELinux, a container's) refused it, and --port 1024 or above was no advice
    ("EACCES", "Permission denied", "127.0.0.1", 8000,
     f"127.0.0.1:8000: cannot listen here (Permission denied); permission denied to listen on 127.0.0.1:8000 {POLICY}"),
    ("EACCES", "Permission denied", "2001:db8::1", 8000, "[2001:db8::1]:8000: cannot listen here (Permission denied); "
     f"permission denied to listen on [2001:db8::1]:8000 {POLICY}"),
    ("EADDRINUSE", "Address already in use", "::1", 8000,
     "[::1]:8000: cannot listen here (Address already in use); stop what uses the port or pass another --port"),
    ("EINVAL", "Invalid argument", "fe80::1", 8000, "[fe80::1]:8000: cannot listen here (Invalid argument); a "
     "link-local IPv6 address needs its network interface as its scope, such as --host fe80::1%eth0"),
    ("EINVAL", "Invalid argument", "::ffff:127.0.0.1", 8000, "[::ffff:127.0.0.1]:8000: cannot listen here (Invalid "
     "argument); an IPv4-mapped IPv6 address cannot be listened on (IPv6-only sockets): pass its IPv4 one, --host "
     "127.0.0.1"),
])
def test_a_bind_failure_other_than_a_busy_port_names_its_own_fix(code: str, strerror: str, host: str, port: int,
                                                                  said: str, tiny_run: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An address not on this machine, a privileged port, a link-local address without its interface or an IPv4-mapped
    one (::ffff:127.0.0.1, which an IPv6-only socket cannot bind) was told to "stop what uses the port"; a port above
    1024 refused by a policy was told to pass one above 1024; an IPv6 host read 2001:db8::1:8000, a port of its own
    address."""
    import errno

    def refuse(self: socket.socket, address: object) -> None:
        raise OSError(getattr(errno, code), strerror)

    monkeypatch.setattr(socket.socket, "bind", refuse)
    argv = ["serve", "--model", str(tiny_run), "--host", host, "--port", str(port), "--log-level", "critical"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert ("stop what uses the port" in err) == (code == "EADDRINUSE")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 sockets here")
def test_an_ipv4_mapped_host_is_told_its_ipv4_address_by_a_real_bind() -> None:
    """`serve --host ::ffff:127.0.0.1`: the IPv6-only socket asyncio makes cannot bind it (EINVAL), and the advice was
    "stop what uses the port or pass another --port", though no port was in use."""
    from pneumoscan.errors import InputError
    from pneumoscan.service.listen import check_listen

    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("IPv6 is turned off here")
    with pytest.raises(InputError) as err:
        check_listen("::ffff:127.0.0.1", 0)
    assert str(err.value).endswith("pass its IPv4 one, --host 127.0.0.1"), err.value


@pytest.mark.parametrize(("code", "strerror", "host", "said"), [
    ("EAFNOSUPPORT", "Address family not supported by protocol", "::1", "IPv6 is turned off or missing on this "
     "machine: pass an IPv4 --host such as 127.0.0.1, or 0.0.0.0 for all"),
    # IPv6 turned off in the kernel some other ways: the generic "stop what uses the port" advice before
    ("EPROTONOSUPPORT", "Protocol not supported", "::1", "IPv6 is turned off or missing on this machine: pass an "
     "IPv4 --host such as 127.0.0.1"),
    ("EPFNOSUPPORT", "Protocol family not supported", "::", "IPv6 is turned off or missing on this machine"),
    # a sandbox forbidding IPv4 sockets (systemd's RestrictAddressFamilies=AF_UNIX): was told the machine had no IPv6
    ("EAFNOSUPPORT", "Address family not supported by protocol", "127.0.0.1", "this machine or the service manager "
     "running pneumoscan does not allow IPv4 network sockets (a sandbox setting such as systemd's "
     "RestrictAddressFamilies=); ask IT support"),
])
def test_a_socket_the_machine_cannot_make_is_told_by_its_family(code: str, strerror: str, host: str, said: str,
                                                                tiny_run: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --host ::1` on a machine without IPv6 failed when the socket was made, before the bind that the one-line
    errors covered: a traceback ending in "[Errno 97] Address family not supported by protocol"."""
    import errno

    real = socket.socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def refused(kind: int = socket.AF_INET, *args: object, **kwargs: object) -> socket.socket:
        if kind == family:
            raise OSError(getattr(errno, code), strerror)
        return real(kind, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "socket", refused)
    assert main(["serve", "--model", str(tiny_run), "--host", host, "--port", "8000", "--log-level", "critical"]) == 2
    captured = capsys.readouterr()
    assert f"{'[' + host + ']' if ':' in host else host}:8000: cannot listen here ({strerror}); {said}" in captured.err
    assert "Traceback" not in captured.err and "serving on" not in captured.out
    assert "stop what uses the port" not in captured.err


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000/"),
    ("::1", "http://[::1]:8000/"),
    ("fe80::1%eth0", "http://[fe80::1%25eth0]:8000/"),  # RFC 6874: a zone's % is written %25 in a URL
])
def test_the_page_url_is_a_url_a_browser_opens(host: str, url: str) -> None:
    """A scoped link-local host printed http://[fe80::1%eth0]:8000/, where %et is not a percent-encoding."""
    from urllib.parse import unquote, urlsplit

    from pneumoscan.service.listen import page_url

    assert page_url(host, 8000) == url
    assert unquote(urlsplit(url).hostname or "") == host  # the URL's host is the address, zone and all


@pytest.mark.parametrize(("host", "bound", "url"), [
    ("0.0.0.0", ("0.0.0.0",), "http://127.0.0.1:8000/"),
    ("::", ("::",), "http://[::1]:8000/"),  # asyncio listens on :: for IPv6 only: not localhost's 127.0.0.1
    ("::0", ("::",), "http://[::1]:8000/"),
    ("", ("0.0.0.0", "::"), "http://localhost:8000/"),
    ("", ("0.0.0.0",), "http://127.0.0.1:8000/"),  # IPv6 not available here
    ("", ("::",), "http://[::1]:8000/"),
])
def test_a_host_of_every_address_gets_this_machines_url(host: str, bound: tuple[str, ...], url: str) -> None:
    """--host 0.0.0.0 printed http://0.0.0.0:8000/, which Edge on Windows refuses to open, and --host :: printed
    http://[::]:8000/: the URL is now this machine's loopback address of the family listening."""
    from pneumoscan.service.listen import page_url

    assert page_url(host, 8000, "http", bound) == url


def test_serving_on_every_address_says_what_listens_and_how_other_machines_reach_it(
        tiny_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --host 0.0.0.0` printed `serving on http://0.0.0.0:PORT/`, and uvicorn's own line `Uvicorn running on
    http://0.0.0.0:PORT`; both now give the page's address on this machine, and say that other machines use this
    machine's name or address. The server really starts (and stops at once) here, with uvicorn's logging."""
    from pneumoscan.service import serving

    class Briefly(serving._Server):  # uvicorn's server, stopping once it serves
        async def main_loop(self) -> None:
            self.should_exit = True

    monkeypatch.setattr(serving, "_Server", Briefly)
    assert main(["serve", "--model", str(tiny_run), "--host", "0.0.0.0", "--port", "0"]) == 0
    captured = capsys.readouterr()
    served = re.search(r"serving on http://127\.0\.0\.1:(\d+)/ \(listening on every IPv4 address: other machines use "
                       r"this machine's name or address; Ctrl\+C stops\)", captured.out)
    assert served, captured.out
    port = int(served.group(1))
    assert (f"Uvicorn running on http://127.0.0.1:{port}/ (listening on every IPv4 address: other machines use this "
            "machine's name or address; Press CTRL+C to quit)") in captured.err
    assert "0.0.0.0:" not in captured.out + captured.err


def test_every_address_without_ipv6_says_ipv4_only(tiny_run: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --host ''` on a machine without IPv6 (asyncio passes over '::' and listens on 0.0.0.0 only) still said
    "listening on every address, IPv4 and IPv6" and gave http://localhost:PORT/, which may resolve to ::1 first."""
    import errno

    from pneumoscan.service import serving

    real = socket.socket

    def no_ipv6(family: int = socket.AF_INET, *args: object, **kwargs: object) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "socket", no_ipv6)
    ports: list[int] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda *args, **kwargs: ports.append(kwargs["port"])))
    assert main(["serve", "--model", str(tiny_run), "--host", "", "--port", "0", "--log-level", "critical"]) == 0
    out = capsys.readouterr().out
    assert (f"serving on http://127.0.0.1:{ports[0]}/ (listening on every IPv4 address, not IPv6, which this "
            "machine lacks: other machines use this machine's name or address; Ctrl+C stops)") in out
    assert "IPv4 and IPv6" not in out


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port 70000: must be between 0 and 65535"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: unknown address"),
    (["--slots", "0"], "--slots 0: must be at least 1"),
    (["--max-upload-mb", "inf"], "--max-upload-mb inf: must be a number above 0"),  # was a 500 on every upload
    (["--max-upload-mb", "nan"], "--max-upload-mb nan: must be a number above 0"),
    (["--upload-memory-mb", "50"], "--upload-memory-mb 50: must be at least the batch limit of 100 MB"),
    (["--max-upload-mb", "200", "--upload-memory-mb", "150"],
     "--upload-memory-mb 150: must be at least the batch limit of 200 MB, so that one full /predict/batch request "
     "fits; such as 800"),
    (["--upload-idle-s", "0"], "--upload-idle-s 0: must be a number of seconds above 0, such as 30"),
    (["--upload-total-s", "nan"], "--upload-total-s nan: must be a number of seconds above 0, such as 600"),
    (["--header-timeout-s", "0"], "--header-timeout-s 0: must be a number of seconds above 0, such as 10"),
    (["--header-timeout-s", "inf"], "--header-timeout-s inf: must be a number of seconds above 0, such as 10"),
    (["--shutdown-timeout-s", "0"], "--shutdown-timeout-s 0: must be a number of seconds above 0, such as 8"),
    (["--shutdown-timeout-s", "nan"], "--shutdown-timeout-s nan: must be a number of seconds above 0, such as 8"),
    (["--threshold", "0.5", "--target-recall", "0.9"], "give either --threshold or --target-recall, not both"),
    (["--threshold", "1.5"], "--threshold 1.5: must be between 0 and 1"),
    (["--target-recall", "0"], "--target-recall 0.0: must be above 0 and at most 1, e.g. 0.95"),
    (["--prevalence", "1"], "--prevalence 1.0: must be strictly between 0 and 1"),
    (["--prevalence", "nan"], "--prevalence nan: must be strictly between 0 and 1"),
])
def test_bad_address_is_one_line(argv: list[str], message: str, tiny_run: Path,
                                 capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    monkeypatch.setattr(serving, "run", serve_at_once())  # a setting let through must not serve forever
    assert main(["serve", "--model", str(tiny_run), "--log-level", "critical", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("::", False), ("xray-server", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    from pneumoscan.service.listen import is_loopback

    assert is_loopback(host) is loopback


def test_listening_beyond_this_machine_warns(tiny_run: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    ports: list[int] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda *args, **kwargs: ports.append(kwargs["port"])))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", "--model", str(tiny_run), "--host", "0.0.0.0", "--port", str(port)]) == 0
    err = capsys.readouterr().err
    assert "0.0.0.0 is reachable from other machines" in err and "no login and no TLS" in err
    assert main(["serve", "--model", str(tiny_run), "--port", str(port)]) == 0
    assert "reachable from other machines" not in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_run), "--port", "0"]) == 0  # a free port, and the page's real address
    assert ports[-1] > 0 and f"serving on http://127.0.0.1:{ports[-1]}/" in capsys.readouterr().out


def test_an_ipv6_address_is_printed_as_a_url(tiny_run: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    monkeypatch.setattr(serving, "run", serve_at_once())  # start-up only
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert main(["serve", "--model", str(tiny_run), "--host", "::1", "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"serving on http://\[::1\]:\d+/ ", out), out  # not http://::1:PORT/, which no browser opens


@pytest.mark.parametrize(("argv", "mb"), [([], 400), (["--max-upload-mb", "150"], 600),
                                          (["--upload-memory-mb", "250"], 250)])
def test_upload_memory_reaches_the_service(argv: list[str], mb: float, tiny_run: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    apps: list[object] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda app, **kwargs: apps.append(app)))
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical", *argv]) == 0
    assert apps[0].state.upload_budget.capacity == mb * 1024 * 1024  # type: ignore[attr-defined]


@pytest.mark.parametrize(("argv", "seconds"), [([], 10.0), (["--header-timeout-s", "2.5"], 2.5)])
def test_the_header_timeout_reaches_uvicorn(argv: list[str], seconds: float, tiny_run: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from pneumoscan.service import serving
    from uvicorn.protocols.http.h11_impl import H11Protocol

    runs: list[dict] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda app, **kwargs: runs.append(kwargs)))
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical", *argv]) == 0
    assert issubclass(runs[0]["http"], H11Protocol) and runs[0]["http"].header_timeout_s == seconds


@pytest.mark.parametrize(("argv", "seconds"), [([], 8.0), (["--shutdown-timeout-s", "25"], 25.0)])
def test_the_shutdown_timeout_reaches_uvicorn(argv: list[str], seconds: float, tiny_run: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    runs: list[dict] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda app, **kwargs: runs.append(kwargs)))
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical", *argv]) == 0
    assert runs[0]["timeout_graceful_shutdown"] == seconds


def test_a_stop_signal_before_uvicorn_serves_stops_at_once_and_one_it_hands_back_is_noted() -> None:
    """uvicorn raises the signal it stopped on again once it has drained: noted, so that `serve` exits 0. One that
    comes before it took over (no app yet, or its lifespan not started) must stop the process, not be noted and
    ignored; and not as a KeyboardInterrupt, which `serving.run` would turn into uvicorn's start-up failure, exit
    code 3."""
    import signal
    from types import SimpleNamespace

    from pneumoscan.service.commands import StopSignals, StoppedBeforeServing

    for app in (None, SimpleNamespace(state=SimpleNamespace(serving=False))):
        stop = StopSignals(app)
        with pytest.raises(StoppedBeforeServing) as stopped:
            stop._handle(signal.SIGTERM, None)
        assert stopped.value.signal_name == "SIGTERM" and not isinstance(stopped.value, (Exception, KeyboardInterrupt))
        stop._handle(signal.SIGINT, None)  # a second one while the first unwinds: ignored
    app = SimpleNamespace(state=SimpleNamespace(serving=True))
    stop = StopSignals(app)
    stop._handle(signal.SIGTERM, None)
    assert stop.received == "SIGTERM"
    before = signal.getsignal(signal.SIGTERM)
    with stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_signal_while_uvicorn_starts_is_not_followed_by_serving_on() -> None:
    """A signal during uvicorn's start-up (the app's lifespan starting) stopped the server, but `serving on URL` was
    still printed first, as if it served: a supervisor waiting for that line took a stopping service for a running
    one."""
    import os
    import signal

    from pneumoscan.service import serving

    async def app(scope: dict, receive, send) -> None:  # noqa: ANN001
        assert scope["type"] == "lifespan"
        while (message := await receive())["type"] != "lifespan.shutdown":
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl+C as the app starts
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    announced: list[bool] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        before_forced = serving.run(app, sockets=[sock], announce=lambda: announced.append(True), log_level="critical",
                                    lifespan="on")
    assert announced == [] and before_forced is None


def test_an_uncompressed_dicom_film_fits_the_default_upload_limit(tiny_run: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A hospital's DX film of 3,480 x 4,240 px, 16 bits, uncompressed (29.5 MB) got 413 from the default 20 MB limit,
    told to downscale or compress what a clinician cannot change."""
    from pneumoscan.service import serving

    from pneumoscan.service.settings import Settings

    apps: list[object] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda app, **kwargs: apps.append(app)))
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical"]) == 0
    film = 3480 * 4240 * 2 + 64 * 1024  # pixels and a generous header
    for settings in (apps[0].state.engine.settings, Settings()):  # type: ignore[attr-defined]
        assert settings.max_upload_mb == 50 and settings.max_upload_bytes > film


def test_a_bad_operating_point_is_named_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    monkeypatch.setattr(serving, "run", serve_at_once())
    assert main(["serve", "--model", str(tmp_path / "missing"), "--port", "0", "--prevalence", "5"]) == 2
    err = capsys.readouterr().err
    assert err == "pneumoscan: error: --prevalence 5.0: must be strictly between 0 and 1\n"


def test_the_operating_point_options_reach_the_service(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscan.service import serving

    apps: list[object] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda app, **kwargs: apps.append(app)))
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical",
                 "--target-recall", "0.99", "--prevalence", "0.2"]) == 0
    predictor = apps[0].state.engine.predictor  # type: ignore[attr-defined]
    assert (predictor.threshold_from, predictor.target_recall, predictor.prevalence) == ("target_recall", 0.99, 0.2)
    assert main(["serve", "--model", str(tiny_run), "--port", "0", "--log-level", "critical",
                 "--threshold", "0.3"]) == 0
    assert apps[1].state.engine.predictor.operating_point()["threshold"] == 0.3  # type: ignore[attr-defined]


def test_a_model_with_malformed_stored_scores_serves_without_an_interval(tiny_run: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored scores with no PNEUMONIA label (an edited file): the model's own threshold is served without its
    interval; a --target-recall, which would be chosen on those scores, is refused in one line."""
    from dataclasses import replace

    from pneumoscan.service import serving

    from pneumoscan.artifact import load_artifact, save_artifact

    net, meta = load_artifact(tiny_run, device="cpu")
    model = save_artifact(tmp_path / "edited.safetensors", net,
                          replace(meta, val_scores={"labels": [0, 0], "probs": [0.1, 0.9]}))
    apps: list[object] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda app, **kwargs: apps.append(app)))
    assert main(["serve", "--model", str(model), "--port", "0", "--log-level", "critical"]) == 0
    assert apps[0].state.engine.predictor.operating_point()["threshold_ci95"] is None  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(["serve", "--model", str(model), "--port", "0", "--log-level", "critical",
                 "--target-recall", "0.9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pneumoscan: error: {model}: its stored validation scores are unusable (no PNEUMONIA (1) "
                          f"label)") and len(err.splitlines()) == 1


def test_ctrl_c_while_uvicorn_is_imported_stops_serve_as_interrupted(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A C extension reports a Ctrl+C during its initialisation as ImportError('initialization failed'): serve took
    it for uvicorn missing ('serve needs uvicorn and fastapi; pip install ...', exit code 2)."""
    interrupt_import(monkeypatch, "uvicorn")
    assert main(["serve"]) == 130
    assert capsys.readouterr().err == "pneumoscan: interrupted\n"


def _dual(first: str) -> list[tuple[int, int, int, str, tuple[object, ...]]]:
    """getaddrinfo's answer for a name with an IPv4 and an IPv6 loopback address, `first` ('4' or '6') first."""
    v4 = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))
    v6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))
    return [v4, v6] if first == "4" else [v6, v4]


@pytest.mark.parametrize("first", ["4", "6"])
@pytest.mark.parametrize("fails", ["socket", "bind"])
def test_the_listen_check_binds_every_address_of_a_name_as_uvicorn_does(first: str, fails: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The check tried only getaddrinfo's first address: a name resolving to ::1 and 127.0.0.1 on a machine without
    IPv6 was refused ('IPv6 is turned off'), though uvicorn (asyncio's create_server with the host) passes over a
    family whose socket cannot be made and serves on 127.0.0.1; one resolving to 127.0.0.1 and an ::1 that cannot
    be bound passed, and uvicorn then failed after loading the model (Python 3.11 and 3.12's asyncio; 3.13's passes
    over such an address). The check now agrees with asyncio."""
    import asyncio
    import errno

    from pneumoscan.errors import InputError
    from pneumoscan.service.listen import check_listen

    real_socket, real_getaddrinfo = socket.socket, socket.getaddrinfo

    def getaddrinfo(host: str | None, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host != "dual.example":
            return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        return [(f, k, p, c, (a[0], port, *a[2:])) for f, k, p, c, a in _dual(first)]

    class Socket(real_socket):  # type: ignore[misc, valid-type]
        def __init__(self, family: int = socket.AF_INET, *args: object, **kwargs: object) -> None:
            if family == socket.AF_INET6 and fails == "socket":
                raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
            super().__init__(family, *args, **kwargs)

        def bind(self, address: object) -> None:
            if self.family == socket.AF_INET6 and fails == "bind":
                raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
            super().bind(address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "socket", Socket)

    async def serves(port: int) -> bool:
        try:
            server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host="dual.example", port=port)
        except OSError:
            return False
        listening = bool(server.sockets)
        server.close()
        return listening

    if fails == "socket" or sys.version_info >= (3, 13):  # a family turned off; an address not here (bpo-30945)
        with check_listen("dual.example", 0) as listening:  # closed, for asyncio to bind the port
            port = listening.port
        assert port > 0 and asyncio.run(serves(port))
    else:
        with pytest.raises(InputError) as err:
            check_listen("dual.example", 0)
        assert str(err.value).startswith("dual.example:0: cannot listen here (Cannot assign requested address on ::1); "
                                         "--host must be an address of this machine")
        assert not asyncio.run(serves(0))


def test_every_address_is_named_so_in_the_page_url_the_warning_and_a_busy_port(
        tiny_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --host ''` (every address, IPv4 and IPv6, as asyncio reads it) printed `serving on http://:PORT/`, which
    no browser opens, `warning:  is reachable from other machines`, and on a busy port `:PORT: cannot listen here`.
    It prints this machine's URL and that it listens on every address, and names the host `*:PORT (every address)`."""
    from pneumoscan.service import serving

    from pneumoscan.service.listen import host_port, page_url

    assert page_url("", 8000) == "http://localhost:8000/" and host_port("", 8000) == "*:8000 (every address)"
    ports: list[int] = []
    monkeypatch.setattr(serving, "run", serve_at_once(lambda *args, **kwargs: ports.append(kwargs["port"])))
    assert main(["serve", "--model", str(tiny_run), "--host", "", "--port", "0", "--log-level", "critical"]) == 0
    captured = capsys.readouterr()
    assert (f"pneumoscan: serving on http://localhost:{ports[-1]}/ (listening on every address, IPv4 and IPv6: other "
            "machines use this machine's name or address; Ctrl+C stops)") in captured.out
    assert "warning: every address is reachable from other machines" in captured.err
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tiny_run), "--host", "", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"error: *:{port} (every address): cannot listen here (" in err and " on 0.0.0.0); stop what" in err


@pytest.mark.parametrize("taken", [2, 5])
def test_port_0_on_several_addresses_tries_other_free_ports(taken: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--port 0` on a host with several addresses took the first address's free port for every one; when another
    family held it the user was told to "pass another --port", though they had passed 0. The whole bind is tried
    again (up to 5 times) with another free port; only when every try meets a taken port is that an error."""
    import errno

    from pneumoscan.errors import InputError
    from pneumoscan.service.listen import check_listen

    real_socket, real_getaddrinfo = socket.socket, socket.getaddrinfo
    refused: list[int] = []

    def getaddrinfo(host: str | None, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host != "dual.example":
            return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        return [(f, k, p, c, (a[0], port, *a[2:])) for f, k, p, c, a in _dual("4")]

    class Socket(real_socket):  # type: ignore[misc, valid-type]
        def bind(self, address: tuple[object, ...]) -> None:
            if self.family == socket.AF_INET6 and len(refused) < taken:  # another program holds it on ::1
                refused.append(int(address[1]))  # type: ignore[call-overload]
                raise OSError(errno.EADDRINUSE, "Address already in use")
            super().bind(address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "socket", Socket)
    if taken < 5:
        with check_listen("dual.example", 0) as listening:
            assert listening.port > 0 and len(refused) == taken and 0 not in refused
    else:
        with pytest.raises(InputError, match="Address already in use on ::1"):
            check_listen("dual.example", 0)
        assert len(refused) == 5


def test_the_check_leaves_its_sockets_listening_and_one_that_cannot_listen_is_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check's sockets were closed, and the port free for any program until uvicorn bound it again: they now
    listen, so a connection reaches them, and closing the check closes them. A socket whose listen fails (another
    program listened on the port between the bind and it) is the check's one line, not a traceback."""
    import errno

    from pneumoscan.errors import InputError
    from pneumoscan.service.listen import check_listen

    with check_listen("127.0.0.1", 0) as listening:
        socket.create_connection(("127.0.0.1", listening.port), timeout=5).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", listening.port), timeout=5)

    class Socket(socket.socket):
        def listen(self, *backlog: int) -> None:
            raise OSError(errno.EADDRINUSE, "Address already in use")

    monkeypatch.setattr(socket, "socket", Socket)
    with pytest.raises(InputError) as err:
        check_listen("127.0.0.1", 0)
    assert str(err.value) == ("127.0.0.1:0: cannot listen here (Address already in use); stop what uses the port or "
                              "pass another --port")


@pytest.mark.parametrize(("os_name", "reuses"), [("posix", True), ("nt", False)])
def test_the_listen_check_sets_so_reuseaddr_only_where_asyncio_does(os_name: str, reuses: bool,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The check set SO_REUSEADDR on Windows too, where it lets a bind succeed on a port another program listens on
    (asyncio's create_server sets it on POSIX only): a busy port passed the check, and uvicorn failed after the model
    loaded."""
    import os

    from pneumoscan.service.listen import check_listen

    real_socket = socket.socket
    options: list[tuple[int, int]] = []

    class Socket(real_socket):  # type: ignore[misc, valid-type]
        def setsockopt(self, level: int, option: int, *value: object) -> None:
            options.append((level, option))
            super().setsockopt(level, option, *value)

    monkeypatch.setattr(socket, "socket", Socket)
    monkeypatch.setattr(os, "name", os_name)
    with check_listen("127.0.0.1", 0) as listening:
        assert listening.port > 0
    monkeypatch.undo()
    assert ((socket.SOL_SOCKET, socket.SO_REUSEADDR) in options) is reuses


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's SO_REUSEADDR")
@pytest.mark.parametrize(("host", "other", "said"), [("127.0.0.1", "127.0.0.1", "127.0.0.1:{port}: cannot listen here"),
                                                     ("", "0.0.0.0", "*:{port} (every address): cannot listen here")])
def test_a_port_another_program_bound_but_does_not_listen_on_yet_is_refused(
        host: str, other: str, said: str, tiny_run: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket bound with SO_REUSEADDR and not listening (a server starting up: uvicorn's --workers and --reload bind
    in one process and listen in another) let the check's bind, and uvicorn's, through on Linux: whichever listened
    first took the port, and `serve` failed with uvicorn's 'address already in use' once its model had loaded, or the
    other program did."""
    from pneumoscan.service import serving

    monkeypatch.setattr(serving, "run", serve_at_once())  # a port let through must not serve forever
    with socket.socket() as starting:
        starting.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        starting.bind((other, 0))
        port = starting.getsockname()[1]
        assert main(["serve", "--model", str(tiny_run), "--host", host, "--port", str(port)]) == 2
        captured = capsys.readouterr()
        starting.listen()  # the other program still can
    assert captured.err == (f"pneumoscan: error: {said.format(port=port)} (another program that is not listening "
                            f"yet, such as a server starting up, and so is not in `ss -ltn`, has bound port {port}"
                            f"{' on 0.0.0.0' if not host else ''}); stop what uses the port or pass another --port\n")
    assert "serving on" not in captured.out


def _closed_connection_port() -> int:
    """A port free but for a previous run's connection closed by the server, which lingers in TIME_WAIT."""
    with socket.socket() as previous:
        previous.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        previous.bind(("127.0.0.1", 0))
        previous.listen()
        port = int(previous.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            answered, _ = previous.accept()
            answered.close()  # the server closes first: its side lingers in TIME_WAIT
            client.recv(1)
    return port


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's SO_REUSEADDR")
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", ""])
def test_a_previous_runs_closed_connections_do_not_hold_the_port(host: str) -> None:
    """A restart on the port of a run that served requests: its connections closed by the server linger in TIME_WAIT,
    which a bind without SO_REUSEADDR fails on, on their address and every address; they must not be taken for a
    program holding the port."""
    from pneumoscan.service.listen import check_listen

    port = _closed_connection_port()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind((host, port))  # what the check would refuse on, were it not told apart
    with check_listen(host, port) as listening:
        assert listening.port == port


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's SO_REUSEADDR")
def test_closed_connections_do_not_hold_the_port_where_the_kernels_table_lists_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """WSL1's /proc/net/tcp reads as empty (Python says linux there): a table that lists no socket, not even the
    check's own listening one, cannot tell closed connections from a program holding the port, and a restart of the
    service on its own port was refused as held by another program."""
    from pneumoscan.service.listen import check_listen

    real = Path.read_text

    def empty(self: Path, *args: object, **kwargs: object) -> str:
        if str(self).startswith("/proc/net/"):
            return "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    port = _closed_connection_port()
    monkeypatch.setattr(Path, "read_text", empty)
    with check_listen("127.0.0.1", port) as listening:
        assert listening.port == port


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's SO_REUSEADDR")
@pytest.mark.parametrize(("family", "other"), [(socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1")],
                         ids=["ipv4", "ipv6"])
def test_a_port_bound_without_listening_is_refused_though_another_address_listens_on_it(family: int,
                                                                                         other: str) -> None:
    """A socket listening on the same port of another address (127.0.0.2, ::1) holds nothing on 127.0.0.1: it must
    not be taken for the closed connections that would explain the failed bind, and let the held port through."""
    from pneumoscan.errors import InputError
    from pneumoscan.service.listen import check_listen

    with socket.socket() as starting, socket.socket(family) as elsewhere:
        starting.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        starting.bind(("127.0.0.1", 0))
        port = starting.getsockname()[1]
        if family == socket.AF_INET6:
            elsewhere.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            elsewhere.bind((other, port))
        except OSError as err:
            pytest.skip(f"cannot bind {other}: {err}")
        elsewhere.listen()
        with pytest.raises(InputError, match=f"has bound port {port}"):
            check_listen("127.0.0.1", port)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's SO_REUSEADDR")
def test_a_port_bound_without_listening_passes_when_the_kernels_table_cannot_be_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc/net/tcp (a sandbox hiding /proc) a bound socket cannot be told from closed connections: the check
    lets the port through, as asyncio would, rather than refuse a restart of the service on its own port."""
    from pneumoscan.service.listen import check_listen

    real = Path.read_text

    def hidden(self: Path, *args: object, **kwargs: object) -> str:
        if str(self).startswith("/proc/net/"):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", hidden)
    with socket.socket() as starting:
        starting.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        starting.bind(("127.0.0.1", 0))
        port = starting.getsockname()[1]
        with check_listen("127.0.0.1", port) as listening:
            assert listening.port == port


# `pneumoscan serve ...` (its arguments after this script's) where another program binds and listens on --port while
# the model loads, and says whether it could: as a server started meanwhile on the same port would.
GRAB_WHILE_LOADING = """
import socket, sys
from pneumoscan.service.engine import Engine

load, others = Engine.__init__, []

def load_while_another_listens(self, *args, **kwargs):
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    others.append(other)
    try:
        other.bind(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])))
        other.listen()
        print("another program listens on the port", flush=True)
    except OSError as err:
        print(f"another program cannot listen on the port: {err.strerror}", flush=True)
    load(self, *args, **kwargs)

Engine.__init__ = load_while_another_listens
from pneumoscan.cli import entry
entry()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_program_listening_on_the_port_while_the_model_loads_cannot_take_it(tiny_run: Path) -> None:
    """The check bound the port, closed its sockets and loaded the model, then uvicorn bound it again: a program that
    listened on the port meanwhile made `serve` fail once its model had loaded (exit code 3, uvicorn's 'address
    already in use'). The check's sockets now stay listening and uvicorn serves on them: the other program is refused
    and `serve` serves."""
    import signal
    import urllib.request

    from tests.service.test_shutdown import Served, start

    port = _free_port()
    proc = start("-c", GRAB_WHILE_LOADING, "serve", "--model", str(tiny_run), "--port", str(port), "--backend", "onnx")
    try:
        served = Served(proc)
        served.wait_for("another program (listens|cannot listen) on the port")
        served.wait_for(r"Uvicorn running on")
        assert "another program cannot listen on the port: Address already in use" in served.output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, served.output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_serving_on_is_said_once_the_port_is_served(tiny_run: Path) -> None:
    """`pneumoscan: serving on URL` was printed after the model loaded but before uvicorn had started, let alone
    listened: a supervisor or a person taking it as the sign that the service answers could be refused, or told of
    a service that then failed to start. It is now said once uvicorn serves on the port, after its start-up lines."""
    import urllib.request

    from tests.service.test_shutdown import serve

    with serve(tiny_run) as (served, port):
        said = served.output.index("pneumoscan: serving on")
        assert served.output.index("Application startup complete") < served.output.index("Uvicorn running on") < said
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell")
def test_a_closed_stdout_is_one_line_before_serving(tiny_run: Path) -> None:
    """`serve >&-`: uvicorn's log formatters asked the missing sys.stdout whether it is a terminal, a traceback and
    exit code 1 after the model had loaded. It is now one line naming the fix, exit code 2, before anything loads."""
    import os

    import pneumoscan

    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m pneumoscan serve --model "{tiny_run}" --port 0 '
                           '--backend onnx >&-'], env=env, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("pneumoscan: error: stdout is closed (>&-): serve writes where it serves and one access "
                           "line per request there; give it a file (> serve.log) or >/dev/null\n")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_serving_on_line_that_cannot_be_written_is_one_line_and_frees_the_port(tiny_run: Path) -> None:
    """`serve >/dev/full`: the 'serving on' line, said once uvicorn serves, failed inside uvicorn's start-up, which
    printed two tracebacks (the OSError, then the app's cancelled lifespan) before the one-line error. It is now the
    one-line error alone, exit code 2, after the server shut down as on a stop signal, the port free."""
    import os

    import pneumoscan

    port = _free_port()
    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "pneumoscan", "serve", "--model", str(tiny_run), "--port",
                               str(port), "--backend", "onnx"], env=env, stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "CancelledError" not in done.stderr, done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("pneumoscan: error: stdout (/dev/full): No space left")
    assert "Application shutdown complete" in done.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_a_serving_on_line_whose_reader_is_gone_is_said_in_one_line(tiny_run: Path) -> None:
    """`serve | true`: the 'serving on' line hit a broken pipe and `serve` exited 1 after uvicorn's shutdown lines,
    with no line saying why. Now one line naming the cause and the fix, exit code 1 as every command on a broken
    pipe."""
    import os

    import pneumoscan

    src = str(Path(pneumoscan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    read, write = os.pipe()
    os.close(read)  # as `true` exits without reading
    try:
        done = subprocess.run([sys.executable, "-m", "pneumoscan", "serve", "--model", str(tiny_run), "--port", "0",
                               "--backend", "onnx"], env=env, stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == (
        "pneumoscan: error: stdout's reader is gone (broken pipe), so the 'serving on' line could not be written, and "
        "the service stopped before serving any request; send stdout to a file (> serve.log) or to a program that "
        "keeps reading it")


def _on_full_disk(log: Path, *, line_buffering: bool = False,
                  code: int = errno.ENOSPC) -> tuple[io.TextIOWrapper, int]:
    """A buffered text stream writing to LOG, whose disk is full (or whose size limit is reached: CODE) while LOG is
    what its descriptor points at (that descriptor pointed at /dev/null takes every write), and the descriptor."""
    sink = os.open(log, os.O_WRONLY | os.O_CREAT)

    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def fileno(self) -> int:
            return sink

        def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
            if os.fstat(sink).st_ino == log.stat().st_ino:  # the log's disk is full
                raise OSError(code, os.strerror(code))
            return os.write(sink, data)

    return io.TextIOWrapper(io.BufferedWriter(FullDisk()), encoding="utf-8", line_buffering=line_buffering), sink


def test_access_lines_a_full_disk_still_holds_at_the_stop_are_dropped_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """`serve > serve.log` stopped (SIGTERM) while the disk is still full: the access lines stdout's buffer held were
    flushed by the CLI as a command's output, which failed: `stdout (...): No space left on device; the output is cut
    short: ... run the command again` and exit code 2 after a clean stop (measured on a 64 kB tmpfs). Now one
    warning, and exit code 0."""
    from pneumoscan.service import commands

    stdout, sink = _on_full_disk(tmp_path / "serve.log")

    def served(*args: object) -> None:  # the service ran; its last access lines wait in stdout's buffer
        sys.stdout.write('INFO:     127.0.0.1:5 - "GET /health HTTP/1.1" 200 OK request_id=a\n')

    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(commands, "_load_and_serve", served)
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        code = main(["serve", "--port", "0"])
    os.close(sink)
    assert code == 0
    said = [r.getMessage() for r in caplog.records if r.name == "pneumoscan.service"]
    assert said == [f"stdout ({tmp_path / 'serve.log'}): No space left on device: the last access lines are lost"], said


@pytest.mark.parametrize("stopped", ["served", "while starting"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_lines_stderr_holds_on_a_full_disk_at_the_stop_are_dropped_not_failed_at_exit(
        stopped: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve > serve.log 2>&1` stopped while the disk is still full: stderr (line-buffered) still held the stop's
    own lines (uvicorn's 'Shutting down', 'stopped on SIGTERM ...'), and Python's flush of it at exit failed: exit
    code 120 where service.md promises 0 (measured on a 64 kB tmpfs, `>` and `>>` alike). They are dropped at the
    stop, as stdout's are; at a file size limit (`ulimit -f`) too, which the CLI took for stdout's error, exit code
    2."""
    from pneumoscan.service import commands

    stdout, out_sink = _on_full_disk(tmp_path / "serve.log")
    stderr, err_sink = _on_full_disk(tmp_path / "serve.log", line_buffering=True, code=code)

    def served(*args: object) -> None:
        with contextlib.suppress(OSError):  # logging's handler passes its error over
            sys.stderr.write("INFO:     Shutting down\n")
        if stopped != "served":
            raise commands.StoppedBeforeServing("SIGTERM")

    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(commands, "_load_and_serve", served)
    code = main(["serve", "--port", "0"])
    stderr.flush()  # as Python does at exit, where an OSError is exit code 120
    stdout.flush()
    os.close(out_sink)
    os.close(err_sink)
    assert code == 0
