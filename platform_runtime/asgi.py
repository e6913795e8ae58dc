"""The few ASGI moves every guard of the api-server makes (tenant_guard, execution_guard,
asset_scope): read a request's whole body, hand it on again, answer with JSON."""

from __future__ import annotations


async def read_body(receive) -> bytes:
    """The request's whole body (empty if the client went away)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive):
    """A ``receive`` that hands ``body`` to the app once, then defers to the real one."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_json(send, status: int, data: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with ``data`` (encoded JSON); ``headers`` kept but for content type and length."""
    kept = [(k, v) for k, v in (headers or []) if k.lower() not in (b"content-length", b"content-type")]
    await send({"type": "http.response.start", "status": status,
                "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
