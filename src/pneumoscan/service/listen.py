"""Where `pneumoscan serve` listens: the check that HOST:PORT can be listened on before the model loads, and the
page's address."""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

if TYPE_CHECKING:
    import socket


class Listening(NamedTuple):
    """Where `serve` listens: the port, the addresses bound on it (those HOST resolves to, less any that asyncio
    passes over, such as '::' on a machine without IPv6), and their sockets, listening, for uvicorn to serve on; a
    context manager that closes them."""

    port: int
    addresses: tuple[str, ...]
    sockets: tuple[socket.socket, ...] = ()

    def __enter__(self) -> Listening:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.sockets:
            sock.close()


def check_listen(host: str, port: int) -> Listening:
    """The port to listen on (a free one for 0), the addresses it is bound on and their sockets, left listening so
    that no other program takes the port while the model loads (close them: `with check_listen(...)`); InputError
    when HOST:PORT cannot be listened on (port in use, on Linux also by a socket bound and not yet listening; unknown
    address), before the model loads. uvicorn serves on these sockets, made as asyncio's `loop.create_server` makes
    them for a host (as uvicorn did when it bound the host itself): on every address the host resolves to at once
    ('' is every address, IPv4 and IPv6), each IPv6 one IPv6-only, passing over an address family whose socket cannot
    be made (IPv6 turned off), and from Python 3.13 an address not on this machine (EADDRNOTAVAIL), but failing on any
    other address that cannot be bound, and when none is bound. For port 0, the first address's free port is tried on
    the others, and the whole is tried again (a few times) when another address holds that port."""
    import socket

    from pneumoscan.errors import InputError

    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: must be between 0 and 65535")
    try:  # as asyncio resolves it: '' is every address
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InputError(f"--host {host}: unknown address ({err.strerror}); use 127.0.0.1, or 0.0.0.0 for all") from None
    addresses = list(dict.fromkeys(infos))
    for tries_left in reversed(range(_FREE_PORT_TRIES)):
        listening = _bind_all(addresses, host, port, retry=tries_left > 0)
        if listening is not None:
            return listening
    raise AssertionError("the last try raises or returns a port")


_FREE_PORT_TRIES = 5  # port 0 on several addresses: how many free ports of the first are tried on the others


def _bind_all(addresses: list[tuple[Any, ...]], host: str, port: int, *, retry: bool) -> Listening | None:
    """`check_listen`'s bind of every one of `addresses` (getaddrinfo's answers for HOST) at once on PORT, then listen
    on each: the port, the addresses bound and their sockets; None, to `retry`, when PORT is 0 and the first
    address's free port is in use on a later one."""
    import socket

    passed_over: tuple[OSError, int, str] | None = None  # the first address asyncio would pass over, and why
    chosen, listening = port, list[tuple[socket.socket, int, str]]()  # the port, and the sockets bound on it
    with contextlib.ExitStack() as bound:  # each stays bound until all are: serve listens on all, or on none
        for family, kind, proto, _, address in addresses:
            try:
                sock = bound.enter_context(socket.socket(family, kind, proto))
            except OSError as err:
                passed_over = passed_over or (err, family, address[0])
                continue
            if os.name == "posix":  # as asyncio: on Windows it lets a bind succeed on a port another socket listens on
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == getattr(socket, "AF_INET6", None) and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # else [::] holds 0.0.0.0's port too
            held = port != 0 and _held_not_listening(family, kind, proto, address, port)  # before this bind holds it
            try:
                sock.bind((address[0], chosen, *address[2:]))  # port 0: the first one's free port for every address
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL and sys.version_info >= (3, 13):  # bpo-30945
                    passed_over = passed_over or (err, family, address[0])
                    continue
                if retry and port == 0 and chosen != 0 and err.errno == errno.EADDRINUSE:
                    return None
                raise _cannot_listen(err, host, port, family, address[0] if len(addresses) > 1 else None) from None
            if held:
                held_by = OSError(errno.EADDRINUSE, "another program that is not listening yet, such as a server "
                                                    f"starting up, and so is not in `ss -ltn`, has bound port {port}")
                raise _cannot_listen(held_by, host, port, family, address[0] if len(addresses) > 1 else None)
            chosen = int(sock.getsockname()[1])
            listening.append((sock, family, address[0]))
        if not listening and passed_over is not None:  # asyncio's 'could not bind on any address'
            err, family, address = passed_over
            raise _cannot_listen(err, host, port, family, address if len(addresses) > 1 else None)
        for sock, family, address in listening:
            try:
                sock.listen()  # uvicorn serves on these: from here on the port is this process's
            except OSError as err:  # another socket listened on it since the bind
                raise _cannot_listen(err, host, port, family, address if len(addresses) > 1 else None) from None
        bound.pop_all()
    return Listening(chosen, tuple(address for _, _, address in listening), tuple(sock for sock, _, _ in listening))


def _held_not_listening(family: int, kind: int, proto: int, address: tuple[Any, ...], port: int) -> bool:
    """Whether another socket holds PORT on ADDRESS without listening on it (Linux): bound with SO_REUSEADDR, as a
    server does before it listens (uvicorn's --workers and --reload bind in one process and listen in another).
    A bind with SO_REUSEADDR, as asyncio's and `check_listen`'s, passes it, and whichever listens first takes the
    port: `serve`, listening at once, would take it from under the other program, which then fails to listen. A bind
    without SO_REUSEADDR fails on it, but also on a previous run's closed connections (TIME_WAIT), which SO_REUSEADDR
    is there to pass; those are in the kernel's table of connections and a socket only bound is not, so only a port
    with none there on an address overlapping ADDRESS is taken as held. The table is trusted only when it lists a
    socket known to be there, one listening on a free port of ADDRESS: WSL1's is empty, a sandbox may hide it."""
    import socket

    if not sys.platform.startswith("linux"):
        return False
    try:
        with _probe(family, kind, proto) as probe:
            probe.bind((address[0], port, *address[2:]))
        return False
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            return False  # `_bind_all`'s bind says why, if it fails too
    try:
        mine = socket.inet_pton(family, address[0].split("%")[0])
        with _probe(family, kind, proto) as known:
            known.bind((address[0], 0, *address[2:]))
            known.listen()
            table = _tcp_sockets()
            if (mine, int(known.getsockname()[1])) not in table:
                return False  # a table that misses a listening socket cannot tell closed connections apart
    except OSError:
        return False
    return not any(theirs_port == port and _overlaps(mine, theirs) for theirs, theirs_port in table)


def _probe(family: int, kind: int, proto: int) -> socket.socket:
    """A socket of `family` for `_held_not_listening`, an IPv6 one IPv6-only, as asyncio makes it."""
    import socket

    sock = socket.socket(family, kind, proto)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def _overlaps(mine: bytes, theirs: bytes) -> bool:
    """Whether a socket on address THEIRS (4 or 16 bytes, as the kernel's table lists it) holds the port on MINE (an
    IPv4 address, or an IPv6-only one): the same address, or either of them every address of its family; an IPv6
    socket on '::' holds IPv4's too unless IPv6-only, which the table does not tell, and an IPv4-mapped address
    (::ffff:127.0.0.1) is IPv4's."""
    if len(theirs) == 16 and theirs[:12] == bytes(10) + b"\xff\xff":
        theirs = theirs[12:]
    elif len(theirs) == 16 and len(mine) == 4:
        return not any(theirs)
    return len(theirs) == len(mine) and (theirs == mine or not any(theirs) or not any(mine))


def _tcp_sockets() -> set[tuple[bytes, int]]:
    """The local address (4 or 16 bytes) and port of the kernel's TCP sockets listening or connected, closing ones
    too (Linux's /proc/net/tcp and tcp6); none when neither can be read, or one is not in the form known."""
    from pathlib import Path

    found = set[tuple[bytes, int]]()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:  # tcp6 is missing without IPv6
            continue
        try:  # rows of 'sl local_address:port rem_address:port st ...' in hexadecimal, the address as 32-bit words
            for row in filter(str.strip, rows):  # of this machine's byte order: 0100007F for 127.0.0.1 on x86
                address, port = row.split()[1].split(":")
                if len(address) not in (8, 32):
                    return set()
                words = (int(address[at:at + 8], 16).to_bytes(4, sys.byteorder) for at in range(0, len(address), 8))
                found.add((b"".join(words), int(port, 16)))
        except (IndexError, ValueError):  # not the form known: cannot tell
            return set()
    return found


def _cannot_listen(err: OSError, host: str, port: int, family: int, address: str | None) -> Exception:
    """The InputError for HOST:PORT when making or binding its socket (of `family`; on `address`, one of several the
    host resolves to, when given) failed with `err`."""
    import socket

    from pneumoscan.errors import InputError

    on = f" on {address}" if address is not None else ""
    fix = _listen_fix(err.errno, host, port, ipv6=family == getattr(socket, "AF_INET6", None))
    return InputError(f"{host_port(host, port)}: cannot listen here ({err.strerror}{on}); {fix}")


def host_port(host: str, port: int) -> str:
    """HOST:PORT as written in an address, an IPv6 host in brackets: [2001:db8::1]:8000, not 2001:db8::1:8000; the
    host '' as '*:8000 (every address)', as `ss -ltn` shows a socket listening on every address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}" if host else f"*:{port} (every address)"


def _unscoped_link_local(host: str) -> bool:
    """Whether HOST is an IPv6 link-local address without its %interface scope, which no socket can bind."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return isinstance(address, ipaddress.IPv6Address) and address.is_link_local and not address.scope_id


def _mapped_ipv4(host: str) -> str | None:
    """The IPv4 address HOST maps when it is an IPv4-mapped IPv6 address (::ffff:127.0.0.1 -> 127.0.0.1), else None."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return None if mapped is None else str(mapped)


def _listen_fix(code: int | None, host: str, port: int, *, ipv6: bool) -> str:
    """What to do when listening on HOST:PORT (an IPv6 address when `ipv6`; making its socket, binding it) failed
    with errno CODE: the port in use is one cause among several."""
    if code == errno.EADDRNOTAVAIL:
        return "--host must be an address of this machine: 127.0.0.1, one of its network addresses, or 0.0.0.0 for all"
    if code == errno.EACCES and 0 < port < 1024:
        return "ports below 1024 need administrator rights: pass --port 1024 or above (such as 8000) behind the proxy"
    if code == errno.EACCES:  # not a privileged port: SELinux, AppArmor or a container's policy
        return (f"permission denied to listen on {host_port(host, port)} (a security policy may forbid it); "
                "pass another --port or ask IT support")
    if code in _NO_SUCH_SOCKET and ipv6:
        return ("IPv6 is turned off or missing on this machine: pass an IPv4 --host such as 127.0.0.1, or 0.0.0.0 "
                "for all")
    if code in _NO_SUCH_SOCKET:
        return ("this machine or the service manager running pneumoscan does not allow IPv4 network sockets (a sandbox "
                "setting such as systemd's RestrictAddressFamilies=); ask IT support")
    if code == errno.EINVAL and _unscoped_link_local(host):
        return f"a link-local IPv6 address needs its network interface as its scope, such as --host {host}%eth0"
    if code == errno.EINVAL and (ipv4 := _mapped_ipv4(host)):
        return (f"an IPv4-mapped IPv6 address cannot be listened on (IPv6-only sockets): pass its IPv4 one, "
                f"--host {ipv4}")
    return "stop what uses the port or pass another --port"


# the kernel makes no socket of that family or protocol: IPv6 disabled (ipv6.disable=1, its module not loaded) gives
# EAFNOSUPPORT or EPROTONOSUPPORT, a sandbox forbidding the family EAFNOSUPPORT; the other two are their siblings
_NO_SUCH_SOCKET = {getattr(errno, name) for name in ("EAFNOSUPPORT", "EPROTONOSUPPORT", "EPFNOSUPPORT", "ESOCKTNOSUPPORT")
                   if hasattr(errno, name)}


def is_loopback(host: str) -> bool:
    """Whether HOST is this machine only (127.x, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_url(host: str, port: int, scheme: str = "http", addresses: Sequence[str] = ()) -> str:
    """The page's address for HOST:PORT; an IPv6 address goes in brackets (http://[::1]:8000/), its zone's % as %25
    (RFC 6874: http://[fe80::1%25eth0]:8000/); for a host of every address, this machine's loopback address of the
    family listening, by ADDRESSES, those bound (`_every_address`): http://127.0.0.1:8000/ for 0.0.0.0,
    http://[::1]:8000/ for ::, http://localhost:8000/ for both ('')."""
    everywhere = _every_address(host, addresses)
    name = everywhere[1] if everywhere else host
    return f"{scheme}://{host_port(name.replace('%', '%25'), port)}/"


def _every_address(host: str, addresses: Sequence[str] = ()) -> tuple[str, str] | None:
    """For a host of every address ('', 0.0.0.0, ::), by ADDRESSES, those bound (default: HOST, '' as IPv4 and
    IPv6): what it listens on ('every IPv4 address') and the loopback name that opens the page on this machine
    (127.0.0.1); None for any other host."""
    import ipaddress

    bound = addresses or ((host,) if host else ("0.0.0.0", "::"))
    try:
        if not all(ipaddress.ip_address(address).is_unspecified for address in bound):
            return None
    except ValueError:  # a name
        return None
    ipv4, ipv6 = any(":" not in address for address in bound), any(":" in address for address in bound)
    if ipv4 and ipv6:
        return "every address, IPv4 and IPv6", "localhost"
    if ipv6:
        return "every IPv6 address", "::1"
    return ("every IPv4 address, not IPv6, which this machine lacks" if not host else "every IPv4 address",
            "127.0.0.1")


def where_listening(host: str, addresses: Sequence[str]) -> str:
    """For a host of every address, what it listens on and how other machines reach the page, then '; ' ('' for any
    other host): the page's URL names this machine's loopback address, which only this machine opens."""
    everywhere = _every_address(host, addresses)
    return f"listening on {everywhere[0]}: other machines use this machine's name or address; " if everywhere else ""
