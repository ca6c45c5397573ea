"""The review queue: list and read items, and decide them (confirm, dismiss, appeal)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from consentry.api.auth import require, reviewer
from consentry.api.errors import ApiError, responses
from consentry.api.models import DecisionIn, ReviewItemOut, ReviewPage
from consentry.api.state import store
from consentry.banks.review import decide
from consentry.store.api_keys import Principal

router = APIRouter(tags=["review"])
ItemId = Path(ge=1, le=2**62, description="the review item's number", examples=[1])


@router.get("/v1/review", response_model=ReviewPage, dependencies=[reviewer], responses=responses(401, 403, 422))
def list_items(request: Request, status: Literal["open", "confirmed", "dismissed"] | None = Query("open"),
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**62)) -> Any:  # fmt: skip
    """Items in the queue, oldest first (default: the open ones)."""
    reviews = store(request).reviews
    items = reviews.list(status, limit=limit, offset=offset)
    return {"status": status, "total": reviews.count(status), "limit": limit, "offset": offset,
            "items": [i.as_dict() for i in items]}  # fmt: skip


@router.get("/v1/review/{item_id}", response_model=ReviewItemOut, dependencies=[reviewer], responses=responses(401, 403, 404, 422))
def get_item(request: Request, item_id: int = ItemId) -> Any:
    """One item with its full decision history."""
    item = store(request).reviews.get(item_id)
    if item is None:
        raise ApiError(404, f"no review item #{item_id}")
    return item.as_dict()


@router.post("/v1/review/{item_id}/decision", response_model=ReviewItemOut, responses=responses(401, 403, 404, 409, 413, 422))
def post_decision(request: Request, body: DecisionIn, item_id: int = ItemId,
                  who: Principal = Depends(require("reviewer"))) -> Any:  # fmt: skip
    """Confirm, dismiss (optionally into a negative bank) or appeal; recorded with the key's
    name as the actor. 409 when the item's status does not allow the action."""
    item = decide(store(request), item_id, body.action, actor=who.name, reason=body.reason, negative_bank=body.negative_bank)
    return item.as_dict()
