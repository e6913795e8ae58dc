"""A local SMTP server that keeps every message as an ``.eml`` file (aiosmtpd).

``make start`` runs it on port 1025 for the platform; tests start their own and read the
mail back with :meth:`MailSink.messages`.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seq = itertools.count()
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        with self._lock:
            name = f"{time.time_ns()}-{next(self._seq):06d}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.folder / name)
        return "250 Message accepted for delivery"


class MailSink:
    def __init__(self, folder: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if port == 0:
            from devplatform.ports import free_port

            port = free_port()
        self.host, self.port = host, port
        self._controller = Controller(_Handler(self.folder), hostname=host, port=port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    __enter__ = start

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self) -> list[EmailMessage]:
        return read_mailbox(self.folder)

    def clear(self) -> None:
        for f in self.folder.glob("*.eml"):
            f.unlink()


def read_mailbox(folder: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(Path(folder).glob("*.eml"))
    ]


def body_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""
