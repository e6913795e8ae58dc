"""A small paginated JSON service used by the shared-library tests (a stand-in)."""

from __future__ import annotations

from fastapi import Header, HTTPException, Query

from devplatform.standin import create_app


def create_catalog_app(items: int = 25, api_key: str = "test-key"):
    app = create_app("catalog")
    app.state.items = [{"id": i, "name": f"item {i}", "price": round(i * 1.5, 2)} for i in range(1, items + 1)]

    @app.get("/items")
    def list_items(start: int = Query(0), count: int = Query(20, le=500), x_api_key: str | None = Header(None)):
        if x_api_key != api_key:
            raise HTTPException(401, "bad api key")
        data = app.state.items[start : start + count]
        return {"total": len(app.state.items), "start": start, "count": len(data), "data": data}

    @app.post("/orders")
    def create_order(order: dict, x_api_key: str | None = Header(None)):
        if x_api_key != api_key:
            raise HTTPException(401, "bad api key")
        if "item_id" not in order:
            raise HTTPException(400, "item_id is required")
        return {"order_id": 1, **order}

    return app
