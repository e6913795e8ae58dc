"""Free localhost ports for a platform of its own (tests, benchmarks) beside ``make start``'s."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free localhost ports (all held while choosing, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_range(n: int, exclude: tuple[int, ...] | list[int] = (), tries: int = 100) -> int:
    """The first of ``n`` consecutive free localhost ports, none of them in ``exclude``
    (a platform's triggerers serve their logs on ``trigger_log_port`` + index)."""
    for _ in range(tries):
        base = free_port()
        ports = range(base, base + n)
        if ports[-1] > 65535 or set(ports) & set(exclude):
            continue
        socks: list[socket.socket] = []
        try:
            for port in ports:
                socks.append(socket.socket())
                socks[-1].bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError(f"no {n} consecutive free ports found in {tries} tries")
