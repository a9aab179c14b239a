"""`pneumoscan serve`: the web service and the clinicians' page under uvicorn."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Iterator

from pneumoscan.inference.commands import add_model_arg
from pneumoscan.service.listen import Listening, check_listen, is_loopback, page_url, where_listening

if TYPE_CHECKING:
    from pneumoscan.service.settings import Settings

log = logging.getLogger("pneumoscan.service")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # systemctl stop, docker stop and Kubernetes send SIGTERM


class StoppedBeforeServing(BaseException):
    """A stop signal came while `serve` was starting (importing the service, loading the model), before uvicorn
    served anything.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` of the loading code takes it for a broken
    model; and not a KeyboardInterrupt, which `serving.run` swallows, as uvicorn.run does, before exiting with uvicorn's
    start-up failure code 3."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class StopSignals:
    """SIGTERM and SIGINT handlers for the whole of `serve`: while it starts, and for uvicorn to hand its stop signal
    back to.

    uvicorn catches them while it serves, stops accepting connections, lets the requests under way finish, then
    raises the signal again for the handler it found: Python's default one killed the process on SIGTERM (exit code
    -15, 143 to a shell, docker or Kubernetes). This one notes the signal instead, so that `serve` says how it stopped
    and exits 0. A signal before uvicorn took over (`app` not yet made, or `app.state.serving` unset), while the model
    loads, stops at once with StoppedBeforeServing: Python's default handlers killed the process with -15 or a
    KeyboardInterrupt traceback there."""

    def __init__(self, app: Any = None) -> None:
        self.app = app
        self.received: str | None = None
        self._before: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._before = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        serving = self.app is not None and self.app.state.serving
        if not serving and self.received is not None:
            return  # a second Ctrl+C while the first one's StoppedBeforeServing unwinds
        self.received = signal.Signals(signum).name
        if not serving:
            raise StoppedBeforeServing(self.received)


def log_stop(stop: StopSignals, timeout_s: float, *, before_forced: list[str] | None = None) -> None:
    """One line on how the service stopped: on which signal, and whether requests under way were cut off, when its
    drain's time was up or at once by a Ctrl+C that came after `before_forced`, the stop signals before it in order
    (None: no Ctrl+C forced the stop)."""
    from pneumoscan.errors import counted

    if stop.received is None:
        return
    cut_off = stop.app.state.requests.cut_off
    forced = before_forced is not None
    how = stop.received
    if before_forced:
        how = f"{before_forced[0]}, then at once on {'a second ' if 'SIGINT' in before_forced else ''}SIGINT"
    if cut_off:
        after = "" if forced else f" after --shutdown-timeout-s {timeout_s:g} s"
        log.warning("stopped on %s: %s still under way%s %s cut off (answered 503, to be sent again)", how,
                    counted(cut_off, "request"), after, "was" if cut_off == 1 else "were")
    else:
        log.info("stopped on %s: every request under way was answered", how)


def _announce(host: str, listening: Listening, tls: bool) -> None:
    """uvicorn's "Uvicorn running on" line, which uvicorn logs only for a port it binds itself, then the page's address
    on stdout, and a warning when HOST is reachable from other machines. Both name the page's address, not HOST as
    given: no browser opens http://0.0.0.0:8000 (Edge on Windows refuses it), http://[::]:8000 or http://:8000."""
    url = page_url(host, listening.port, "https" if tls else "http", listening.addresses)
    where = where_listening(host, listening.addresses)
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s (%sPress CTRL+C to quit)", url, where)
    print(f"pneumoscan: serving on {url} ({where}Ctrl+C stops)", flush=True)
    if not is_loopback(host):
        lacks = "no login" if tls else "no login and no TLS"
        print(f"pneumoscan: warning: {host or 'every address'} is reachable from other machines, and this service has "
              f"{lacks}; put it behind the hospital's authenticating HTTPS reverse proxy", file=sys.stderr, flush=True)


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn's TLS options for --ssl-certfile/--ssl-keyfile (none without them); InputError for a file that
    cannot be used, before the model loads."""
    from pneumoscan.errors import InputError

    if args.ssl_certfile is None:
        if args.ssl_keyfile is not None:
            raise InputError(f"--ssl-keyfile {args.ssl_keyfile}: needs --ssl-certfile, the certificate it belongs to")
        return {}
    import uvicorn

    from pneumoscan.service.tls import tls_context, tls_loop

    context = tls_context(args.ssl_certfile, args.ssl_keyfile)
    options: dict[str, Any] = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile}
    if callable(getattr(uvicorn.Config, "get_loop_factory", None)):  # uvicorn 0.36+ takes a loop factory
        options["loop"] = tls_loop(context, args.header_timeout_s)
    else:
        log.warning("uvicorn %s takes no event loop of pneumoscan's: a TLS handshake gets asyncio's 60 s, not "
                    "--header-timeout-s, a plain-HTTP request to the HTTPS port is closed unanswered, failed handshakes "
                    "are not logged, and a closing answer's tail can be lost to a slow client; uvicorn 0.36 or later "
                    "has all four", uvicorn.__version__)
    return options


def _settings(args: argparse.Namespace) -> Settings:
    """The service's Settings from the command line (InputError for a bad value, before the model loads)."""
    from pneumoscan.service.settings import Settings

    return Settings(model=args.model, backend=args.backend, onnx_path=args.onnx, threshold=args.threshold,
                    target_recall=args.target_recall, prevalence=args.prevalence, max_upload_mb=args.max_upload_mb,
                    inference_slots=args.slots, upload_memory_mb=args.upload_memory_mb,
                    upload_idle_s=args.upload_idle_s, upload_total_s=args.upload_total_s,
                    header_timeout_s=args.header_timeout_s, shutdown_timeout_s=args.shutdown_timeout_s,
                    audit_log=args.audit_log)


def _load_and_serve(args: argparse.Namespace, listening: Listening, stop: StopSignals) -> list[str] | None:
    """Import the service (a second or two), load the model, then serve under uvicorn on the sockets `listening`
    holds until stopped, saying where once it serves; when a Ctrl+C cut the drain short, the stop signals that came
    before it (`serving.run`)."""
    from pneumoscan.service import serving
    from pneumoscan.service.app import create_app
    from pneumoscan.service.protocol import http_protocol
    from pneumoscan.service.tracking import log_config

    settings = _settings(args)
    tls = tls_options(args)
    stop.app = create_app(settings)
    return serving.run(stop.app, sockets=listening.sockets,
                       announce=lambda: _announce(args.host, listening, bool(tls)), host=args.host,
                       port=listening.port, log_level=args.log_level, log_config=log_config(), server_header=False,
                       http=http_protocol(settings.header_timeout_s),
                       timeout_graceful_shutdown=settings.shutdown_timeout_s, **tls)


def cmd_serve(args: argparse.Namespace) -> int:
    """Listen on the port (fail fast when it is busy), load the model (fail fast on a bad --model), then serve on
    the port held until interrupted; a stop signal while it starts ends it at once, with code 0 as once it serves."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as err:
        from pneumoscan.errors import InputError, raise_if_interrupted

        raise_if_interrupted(err)
        raise InputError("serve needs uvicorn and fastapi; pip install uvicorn fastapi python-multipart") from None
    if sys.stdout is None:  # `>&-`: uvicorn's log formatters call sys.stdout.isatty(), a traceback before serving
        from pneumoscan.errors import InputError

        raise InputError("stdout is closed (>&-): serve writes where it serves and one access line per request there; "
                         "give it a file (> serve.log) or >/dev/null")
    from pneumoscan.stream_failures import reader_gone, reader_gone_why, tell, to_devnull

    from pneumoscan.service.tracking import StderrHandler

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s",
                        handlers=[StderrHandler()])
    with check_listen(args.host, args.port) as listening, _own_log_level(args.log_level):
        with StopSignals() as stop:
            try:
                before_forced = _load_and_serve(args, listening, stop)
            except StoppedBeforeServing as err:
                log.info("stopped on %s while starting, before serving any request", err.signal_name)
                _drop_unwritable_lines()
                return 0  # as after a drained stop: systemd, docker or Kubernetes asked for it
            except OSError as err:  # the `serving on` line's (serving.run): a disk's error goes to the CLI's handler
                if not reader_gone(err):
                    raise
                tell(f"pneumoscan: error: {reader_gone_why(err)}, so the 'serving on' line could not "
                      "be written, and the service stopped before serving any request; send stdout to a file "
                      "(> serve.log) or to a program that keeps reading it")
                to_devnull(sys.stdout.fileno())  # what the failed write left, not a second failure at exit
                return 1
        log_stop(stop, args.shutdown_timeout_s, before_forced=before_forced)
    _drop_unwritable_lines()
    return 0


def _drop_unwritable_lines() -> None:
    """Once the service stopped: access lines its stdout's buffer still holds because the disk is still full are
    dropped, with one line saying so; the CLI's last flush took them for a command's output cut short (exit code 2,
    "run the command again") after a clean stop. So are the lines stderr holds on that disk (`> serve.log 2>&1`: the
    stop's own lines, this one): Python's flush at exit failed on them, exit code 120."""
    from pneumoscan.stream_failures import drop_if_full, stdout_name

    name = stdout_name()  # before it points at /dev/null
    err = drop_if_full(sys.stdout)
    if err is not None:
        log.warning("%s: %s: the last access lines are lost", name, err.strerror)
    drop_if_full(sys.stderr)


@contextlib.contextmanager
def _own_log_level(level: str) -> Iterator[None]:
    """pneumoscan's own log lines ("model ... ready", "stopped on ...", its warnings) at `--log-level`, as uvicorn's
    are, for the command's run; third-party libraries' stay at INFO and above (their DEBUG could quote a file)."""
    logger = logging.getLogger("pneumoscan")
    before = logger.level
    logger.setLevel(level.upper())
    try:
        yield
    finally:
        logger.setLevel(before)


def add_commands(subparsers: Any) -> None:
    """Register `serve` on the main CLI."""
    from pneumoscan.inference.operating_point import add_operating_point_args

    p = subparsers.add_parser("serve", help="web service and clinicians' page (POST /predict, GET /)")
    add_model_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every IPv4 address, "
                        "'' for every address, IPv4 and IPv6; for these it prints the page's address on this machine, "
                        "such as http://127.0.0.1:8000/, and other machines use this machine's name or address)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--ssl-certfile", metavar="FILE",
                   help="serve HTTPS with this certificate (PEM; the chain after it); default: plain HTTP, behind "
                        "the hospital's HTTPS proxy")
    p.add_argument("--ssl-keyfile", metavar="FILE",
                   help="the certificate's private key (PEM, unencrypted; default: in --ssl-certfile)")
    p.add_argument("--backend", choices=["torch", "onnx", "auto"], default="auto",
                   help="inference engine (default auto: torch on a CUDA GPU, else onnx when onnxruntime is "
                        "installed)")
    p.add_argument("--onnx", help="an ONNX export of --model to use (default: RUN/model.onnx if current, "
                                  "else exported in memory at start-up)")
    add_operating_point_args(p, "operating point (GET /model and the page say which is in use)")
    p.add_argument("--max-upload-mb", type=float, default=50.0,
                   help="largest accepted upload in MB (default 50: an uncompressed DICOM film is about width x "
                        "height x 2 bytes, 3480 x 4240 px is 29.5 MB)")
    p.add_argument("--slots", type=int, default=2, help="requests processed at the same time (default 2)")
    p.add_argument("--upload-memory-mb", type=float,
                   help="upload bodies held in memory at once, all requests together, in MB (default 4 x the "
                        "batch limit of max(100, --max-upload-mb): 400); beyond it a request waits up to 2 s, "
                        "then gets 503 with Retry-After")
    p.add_argument("--upload-idle-s", type=float, default=30.0,
                   help="an upload that sends no data for this many seconds gets 408 and its memory is freed "
                        "(default 30)")
    p.add_argument("--upload-total-s", type=float,
                   help="an upload not all sent within this many seconds gets 408 (default: no limit; a slow "
                        "link takes about 800 s for a 100 MB batch at 1 Mbit/s)")
    p.add_argument("--header-timeout-s", type=float, default=10.0,
                   help="a connection whose request line and headers have not all arrived this many seconds after "
                        "it opened, or after the previous answer when kept alive, is closed, with 408 if part of "
                        "them came; so is one still sending, this long after the answer, a body answered before it "
                        "was read (such as 413) (default 10; bodies read are timed by --upload-idle-s and "
                        "--upload-total-s); an answer that closes the connection while the client still sends "
                        "waits up to this long for the client to stop (2 s once it sends nothing), then resets it; a client "
                        "that takes none of its answer for this long is cut off; with "
                        "--ssl-certfile, a TLS handshake not done within this time closes the connection too")
    p.add_argument("--audit-log", metavar="FILE",
                   help="append one JSON line per analysed film to FILE: UTC time, request id, model SHA-256, "
                        "operating point, P(pneumonia), decision, guard outcome, image width and height; never the "
                        "image, its file name or DICOM data (default: none). Each line is on disk (fsynced) before "
                        "its answer is sent, and a result that cannot be recorded is not given (503). FILE moved "
                        "away or removed (logrotate) is opened again at the next line")
    p.add_argument("--shutdown-timeout-s", type=float, default=8.0,
                   help="on SIGTERM (systemctl stop, docker stop, Kubernetes) or Ctrl+C, new connections are refused "
                        "and the requests under way get this many seconds to finish; those still running then get "
                        "503, as they do at once on a Ctrl+C while they finish; it then exits 0 (default 8, within docker stop's "
                        "10 s; raise the orchestrator's grace period with it)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="level of the log lines, uvicorn's and pneumoscan's own alike (default info: the model "
                        "ready, one access line per request, ending with its request_id=ID, the answer's "
                        "X-Request-ID, and how it stopped; warning: warnings and errors only); the 'serving on' "
                        "line and the warning of a HOST reachable from other machines always show. Logs hold "
                        "paths, never file names or image data")
    p.set_defaults(func=cmd_serve)
