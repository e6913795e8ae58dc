"""Flower for one team, with every page behind the team's password.

Flower 2.2 guards its UI and ``/api`` with ``FLOWER_BASIC_AUTH`` but answers ``/metrics`` and
``/healthcheck`` to anyone: their handlers (``flower.views.monitor``) never ask for the login,
and no option changes that. Run as ``python -m platform_runtime.flower`` (instead of
``celery flower``, same environment variables), this swaps those two handlers for subclasses
that require the same login (tornado's ``authenticated``, which calls Flower's own
``get_current_user``: basic auth, 401 without it) and then starts ``celery flower``.

The swap edits ``flower.urls.handlers``, the route list Flower builds its application from
(``flower.app.Flower`` reads it when the app is created); ``tests/test_flower_auth.py`` pins
that and checks the guarded handlers on a real Flower.
"""

from __future__ import annotations

import sys

import tornado.web
from flower import urls
from flower.views import monitor


class Metrics(monitor.Metrics):
    @tornado.web.authenticated
    async def get(self):
        await super().get()


class Healthcheck(monitor.Healthcheck):
    @tornado.web.authenticated
    async def get(self):
        await super().get()


GUARDED = {monitor.Metrics: Metrics, monitor.Healthcheck: Healthcheck}


def guard_handlers(handlers: list) -> int:
    """Replace the open handlers in Flower's route list, in place; how many were replaced."""
    swapped = 0
    for i, h in enumerate(handlers):
        if isinstance(h, tuple) and h[1] in GUARDED:
            handlers[i] = (h[0], GUARDED[h[1]], *h[2:])
            swapped += 1
    return swapped


def main() -> None:
    if guard_handlers(urls.handlers) != len(GUARDED):
        raise SystemExit("platform_runtime.flower: Flower's /metrics or /healthcheck handler was not found; "
                         "this Flower version is not the one the guard was written for")
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", "flower", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
