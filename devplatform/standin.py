"""Local stand-ins for the external services the domains call.

A domain declares each stand-in in its ``settings.yaml`` (``standins:`` with a name, the
import path of an app factory and a port). ``make start`` serves them on localhost;
tests start them in-process with :class:`StandInServer` on a free port.

Every stand-in app is made by :func:`create_app`, which adds the same fault injection to
all of them. A fault applies to the next ``times`` matching calls, or to a ``fraction``
of them, and is switched on over HTTP (``POST /_standin/faults``) or directly from a test
(``server.faults.add(...)``):

- ``status``: answer with this status (``retry_after`` adds a Retry-After header);
  the request is not applied;
- ``delay``: wait this many seconds, then apply the request and answer normally (a slow server);
- ``hang``: apply the request, then hold the answer this many seconds (a client timeout
  after the server has acted);
- ``drop_after_apply``: apply the request (the handler runs, its effects persist), then
  close the connection without sending any response (a response lost on the way back);
- ``malformed``: answer 200 with a body that is not JSON; the request is not applied.

``GET /_standin/calls`` lists the calls received (method, path, query, idempotency key,
status; ``status`` 0 = no response was sent).

The admin routes (``/_standin/faults``, ``/_standin/calls``) require the header
``X-Standin-Admin-Key`` (:data:`ADMIN_KEY_HEADER`) with the app's admin key
(``app.state.admin_key``, :attr:`StandInServer.admin_key`); without it they answer 401, and
are, like every ``/_standin`` request, not recorded as calls. Each app gets a random key
when made; ``make start`` sets the platform's (``standin_admin_key`` in
``.local/secrets.json``), handed to the stand-in process in its environment
(:data:`ADMIN_KEY_ENV`), never on its command line. ``/_standin/health`` stays open; the
Python API (``server.faults``) needs no key.

Secrets (:mod:`devplatform.masking`): query parameters and headers named like a secret (the names Airflow's secrets
masker hides, e.g. ``password``, ``client_secret``, ``*token*``, ``Authorization``,
``api_key``, plus OAuth's ``code``) are replaced by ``***`` in the call records and in the
server's access log, so ``/_standin/calls`` and the stand-in logs never repeat a credential.
Stand-ins are development and test tooling: no production connection points at one.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from devplatform.masking import mask_access_log, mask_mapping, mask_query
from devplatform.ports import free_port

ADMIN_KEY_HEADER = "X-Standin-Admin-Key"
ADMIN_KEY_ENV = "STANDIN_ADMIN_KEY"  # make start -> serve-standin: the platform's admin key
OPEN_ADMIN_PATHS = frozenset({"/_standin/health"})


class Fault(BaseModel):
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    hang: float = 0.0
    drop_after_apply: bool = False
    malformed: bool = False
    times: int | None = 1
    fraction: float | None = None
    path: str | None = None  # a path prefix the fault is limited to
    method: str | None = None
    seed: int = 0


@dataclass
class Call:
    method: str
    path: str
    query: str  # masked
    idempotency_key: str | None
    status: int = 0  # 0: no response sent (dropped)
    at: float = field(default_factory=time.time)
    headers: dict[str, str] = field(default_factory=dict)  # masked


class FaultInjector:
    """Thread-safe list of armed faults and a log of the calls received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[tuple[Fault, random.Random]] = []
        self.calls: list[Call] = []

    def add(self, fault: Fault | None = None, **kwargs) -> Fault:
        fault = fault or Fault(**kwargs)
        if fault.fraction is not None and "times" not in kwargs:
            fault = fault.model_copy(update={"times": None})
        with self._lock:
            self._faults.append((fault, random.Random(fault.seed)))
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for i, (fault, rng) in enumerate(self._faults):
                if fault.path and not path.startswith(fault.path):
                    continue
                if fault.method and fault.method.upper() != method.upper():
                    continue
                if fault.fraction is not None and rng.random() >= fault.fraction:
                    continue
                if fault.times is not None:
                    remaining = fault.times - 1
                    if remaining <= 0:
                        self._faults.pop(i)
                    else:
                        self._faults[i] = (fault.model_copy(update={"times": remaining}), rng)
                return fault
        return None

    def calls_to(self, path_prefix: str, method: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.path.startswith(path_prefix) and (method is None or c.method == method.upper())
            ]


def drop_connection(scope: Mapping[str, Any]) -> bool:
    """Close the TCP connection this request came on, without a response.

    ASGI has no "abort": find this process's socket whose local and remote addresses are the
    request's (``server``, ``client``) and shut it down; the server then sees the client gone.
    Returns False when no such socket is found."""
    import psutil

    server, client = tuple(scope.get("server") or ()), tuple(scope.get("client") or ())
    for c in psutil.Process().net_connections(kind="tcp"):
        if c.fd >= 0 and c.laddr and c.raddr and tuple(c.laddr) == server and tuple(c.raddr) == client:
            sock = socket.fromfd(c.fd, c.family, c.type)  # a duplicate descriptor of the same socket
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
            return True
    return False


def admin_key_ok(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` is the admin key (constant-time; no key set refuses everyone)."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class FaultMiddleware:
    """Pure ASGI: records every call (masked) and applies the armed faults; the ``/_standin``
    admin routes (not recorded) answer only a request with the admin key."""

    def __init__(self, app, injector: FaultInjector, state: Any = None) -> None:
        self.app, self.injector, self.state = app, injector, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_standin"):
            if scope["path"] not in OPEN_ADMIN_PATHS:
                name = ADMIN_KEY_HEADER.lower().encode()
                given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name), None)
                if not admin_key_ok(given, getattr(self.state, "admin_key", None)):
                    body = f'{{"detail":"the stand-in admin routes need the header {ADMIN_KEY_HEADER}"}}'
                    await self._answer(send, 401, body)
                    return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        call = Call(
            scope["method"],
            scope["path"],
            mask_query(scope.get("query_string", b"").decode("latin-1")),
            next((v for k, v in headers if k.lower() == "idempotency-key"), None),
            headers=mask_mapping(headers),
        )
        self.injector.record(call)
        fault = self.injector.pick(scope["method"], scope["path"])

        async def send_recording(message) -> None:
            if message["type"] == "http.response.start":
                call.status = message["status"]
            await send(message)

        if fault is None:
            await self.app(scope, receive, send_recording)
            return
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status:
            headers_out = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            body = f'{{"errorMessage":"injected fault {fault.status}","errorCode":{fault.status}}}'
            await self._answer(send_recording, fault.status, body, headers_out)
            return
        if fault.malformed:
            await self._answer(send_recording, 200, '{"data": [{"id": 1, "trunc')
            return
        if not (fault.hang or fault.drop_after_apply):
            await self.app(scope, receive, send_recording)
            return
        # apply the request in full, keeping its answer back
        answer: list[dict] = []

        async def hold(message) -> None:
            answer.append(message)

        await self.app(scope, receive, hold)
        if fault.drop_after_apply:
            if drop_connection(scope):
                await self._until_disconnected(receive)
                return
            raise RuntimeError(f"stand-in could not find the connection of {scope['method']} {scope['path']} to drop")
        await asyncio.sleep(fault.hang)
        for message in answer:
            await send_recording(message)

    @staticmethod
    async def _answer(send, status: int, body: str, headers: Mapping[str, str] | None = None) -> None:
        raw = body.encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": raw})

    @staticmethod
    async def _until_disconnected(receive, timeout: float = 10) -> None:
        async def wait() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            pass


def create_app(title: str, admin_key: str | None = None) -> FastAPI:
    """A FastAPI app with fault injection, masked call records and the ``/_standin`` admin
    routes, which need ``admin_key`` (``app.state.admin_key``; random unless given)."""
    app = FastAPI(title=f"{title} (local stand-in)")
    injector = FaultInjector()
    app.state.faults = injector
    app.state.admin_key = admin_key or secrets.token_urlsafe(32)
    app.add_middleware(FaultMiddleware, injector=injector, state=app.state)
    mask_access_log()

    @app.post("/_standin/faults", include_in_schema=False)
    def add_fault(fault: Fault) -> dict:
        injector.add(fault)
        return {"armed": fault.model_dump()}

    @app.delete("/_standin/faults", include_in_schema=False)
    def clear_faults() -> dict:
        injector.clear()
        return {"cleared": True}

    @app.get("/_standin/calls", include_in_schema=False)
    def list_calls() -> list[dict]:
        return [asdict(c) for c in injector.calls]

    @app.get("/_standin/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok", "service": title}

    return app


def load_factory(path: str) -> Callable[..., FastAPI]:
    """``package.module:function`` -> the app factory."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def serve(app: FastAPI, port: int, log_level: str = "info") -> None:
    """Serve a stand-in app in this process until it is stopped (``make start``, benchmarks).

    ``gc.freeze()`` first: the imports leave some hundred thousand long-lived objects (FastAPI,
    pydantic, numpy) that every full garbage collection would walk again; frozen, they are
    skipped. Without it a stand-in under a fan-out of large bodies paused 100-170 ms on
    about every other wave (benchmarks/hss_fanout.py), a server artefact, not the client's.
    """
    import gc

    import uvicorn

    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level=log_level)


class StandInServer:
    """Serve an app on a free localhost port in a background thread (for tests)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        import uvicorn

        self.app = app
        self.port = port or free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> FaultInjector:
        return self.app.state.faults

    @property
    def admin_key(self) -> str:
        """The key the HTTP admin routes want (``server.faults`` needs none)."""
        return self.app.state.admin_key

    @property
    def admin_headers(self) -> dict[str, str]:
        """``{"X-Standin-Admin-Key": key}``, for ``requests`` calls to ``/_standin/faults|calls``."""
        return {ADMIN_KEY_HEADER: self.admin_key}

    def __enter__(self) -> StandInServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"stand-in {self.app.title} did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
