"""Local stand-ins for the external services the domains call.

A domain declares each stand-in in its ``settings.yaml`` (``standins:`` with a name, the
import path of an app factory and a port). ``make start`` serves them on localhost;
tests start them in-process with :class:`StandInServer` on a free port.

Every stand-in app is made by :func:`create_app`, which adds the same fault injection to
all of them. A fault applies to the next ``times`` matching calls, or to a ``fraction``
of them, and is switched on over HTTP (``POST /_standin/faults``) or directly from a test
(``server.faults.add(...)``):

- ``status``: answer with this status (``retry_after`` adds a Retry-After header);
- ``delay``: wait this many seconds, then answer normally;
- ``hang``: wait this many seconds before answering (a client timeout);
- ``malformed``: answer 200 with a body that is not JSON.

``GET /_standin/calls`` lists the calls received (method, path, query, idempotency key).
Stand-ins are development and test tooling: no production connection points at one.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel


class Fault(BaseModel):
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    hang: float = 0.0
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
    query: str
    idempotency_key: str | None
    status: int = 0
    at: float = field(default_factory=time.time)


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


def create_app(title: str) -> FastAPI:
    """A FastAPI app with fault injection and the ``/_standin`` admin routes."""
    app = FastAPI(title=f"{title} (local stand-in)")
    injector = FaultInjector()
    app.state.faults = injector

    @app.middleware("http")
    async def inject(request: Request, call_next):
        path = request.url.path
        if path.startswith("/_standin"):
            return await call_next(request)
        call = Call(
            request.method,
            path,
            request.url.query,
            request.headers.get("idempotency-key"),
        )
        with injector._lock:
            injector.calls.append(call)
        fault = injector.pick(request.method, path)
        response: Response | None = None
        if fault is not None:
            if fault.hang:
                await asyncio.sleep(fault.hang)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                response = JSONResponse(
                    {"errorMessage": f"injected fault {fault.status}", "errorCode": fault.status},
                    status_code=fault.status,
                    headers=headers,
                )
            elif fault.malformed:
                response = Response('{"data": [{"id": 1, "trunc', status_code=200, media_type="application/json")
        if response is None:
            response = await call_next(request)
        call.status = response.status_code
        return response

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
