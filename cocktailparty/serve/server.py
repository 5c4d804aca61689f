"""The ``cocktail serve`` command: start the web page's server with uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from ..core.errors import CocktailError

log = logging.getLogger("cocktailparty")


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise CocktailError(f"--host {host}: not an address this machine can listen on ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise CocktailError(f"--port {port}: {host}:{port} is already in use; pick another port with --port") from None
        if err.errno == errno.EACCES:
            raise CocktailError(f"--port {port}: not allowed to listen there (ports below 1024 need root); "
                                f"pick another port with --port") from None
        raise CocktailError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(app, sock: socket.socket):
    """A uvicorn server for ``app`` on ``sock``; ``server.run(sockets=[sock])`` serves until
    ``server.should_exit`` is set (or Ctrl-C when run in the main thread)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def cli_serve(args) -> int:
    from ..inference.separate import resolve_device
    from .app import Limits, create_app

    for flag, value in (("--max-mb", args.max_mb), ("--max-minutes", args.max_minutes),
                        ("--keep-minutes", args.keep_minutes), ("--queue", args.queue)):
        if not value > 0:
            raise CocktailError(f"{flag} {value:g}: must be above 0")
    if not 0 <= args.port <= 65535:
        raise CocktailError(f"--port {args.port}: not a port number (0-65535; 0 picks a free one)")
    limits = Limits(max_bytes=int(args.max_mb * 1e6), max_seconds=args.max_minutes * 60,
                    max_pending=int(args.queue), keep_seconds=args.keep_minutes * 60)
    sock = open_socket(args.host, args.port)
    try:
        loopback = _is_loopback(args.host)
        app = create_app(args.model, device=resolve_device(args.device), limits=limits, loopback_only=loopback)
        if not loopback:
            log.warning("listening on %s: anyone who can reach this machine can use the page "
                        "(the default, 127.0.0.1, is this machine only)", args.host)
        print(f"cocktail serve: open {address(sock)} in a browser (Ctrl-C stops)", flush=True)
        try:
            make_server(app, sock).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shuts down cleanly, then passes Ctrl-C on: the way to stop
            pass
        print("cocktail serve: stopped; its uploads and results are removed", flush=True)
    finally:
        sock.close()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
