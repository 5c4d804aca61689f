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


def serve(model: str | None = None, device: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          limits=None) -> None:
    """Serve the page on ``host:port`` until Ctrl-C; ``model`` is the separation model the page
    preselects (None: the bundled default), ``limits`` an :class:`~cocktailparty.serve.app.Limits`."""
    from ..core.device import resolve_device
    from .app import create_app

    sock = open_socket(host, port)
    try:
        loopback = _is_loopback(host)
        app = create_app(model, device=resolve_device(device), limits=limits, loopback_only=loopback)
        if not loopback:
            log.warning("listening on %s: anyone who can reach this machine can use the page "
                        "(the default, 127.0.0.1, is this machine only)", host)
        print(f"cocktail serve: open {address(sock)} in a browser (Ctrl-C stops)", flush=True)
        try:
            make_server(app, sock).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shuts down cleanly, then passes Ctrl-C on: the way to stop
            pass
        print("cocktail serve: stopped; its uploads and results are removed", flush=True)
    finally:
        sock.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
