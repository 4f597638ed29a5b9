"""A free TCP port on loopback, for an app started on a port nobody else uses (tests, bench, scripts)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that was free a moment ago: the OS picks one, and the socket lets go of it.
    (Another process could take it before the caller binds it; on loopback, in practice, nobody does.)"""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
