"""Bind the server's address before anything slow happens, so a busy port is reported at once."""

from __future__ import annotations

import errno
import socket

from maxsim.api.settings import SettingsError


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), for uvicorn to listen on.

    Raises ``SettingsError`` with one line naming the address when it cannot be had.
    """
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise SettingsError(f"cannot listen on {where}: the host does not resolve ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        # as uvicorn does: reuse a port left in TIME_WAIT (a port another socket listens on stays refused)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"port {port} on {host} is already in use (another server is running there?); "
                "stop it or pick another --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise SettingsError(f"not allowed to listen on {where} (ports below 1024 need privileges)") from None
        raise SettingsError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock
