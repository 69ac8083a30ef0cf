"""Items: upsert and delete in the catalogue; similar items from the model."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Path, Response

from recengine.serving.api.deps import K, ReadKey, ServiceDep, WriteKey
from recengine.serving.api.schemas import ItemIn, ItemOut, RecommendationOut, SimilarOut

router = APIRouter(prefix="/v1/items", tags=["items"])
ItemId = Annotated[str, Path(min_length=1, max_length=512)]


@router.put("/{item_id}", response_model=ItemOut)
def put_item(item_id: ItemId, item: ItemIn, service: ServiceDep, _: WriteKey) -> ItemOut:
    """Insert or update an item. An item the serving model does not know is recommendable at once through its
    content (title, text, categories), until the next retrain learns it."""
    fields = {name: value for name, value in item.model_dump(exclude={"attributes"}).items() if value is not None}
    frame = pd.DataFrame([{**fields, **item.attributes}], index=pd.Index([item_id], name="item"))
    if "categories" in frame:
        frame["categories"] = pd.Series([item.categories], index=frame.index, dtype=object)
    (served,) = service.upsert_items(frame)
    note = {"model": "stored; the model recommends it (metadata changes reach the model with the next retrain)",
            "content": "stored; recommendable at once through its content, and learned by the next retrain",
            None: "stored; without a title, text or categories it is recommendable after the next retrain"}[served]
    return ItemOut(item=item_id, in_model=served is not None, note=note)


@router.delete("/{item_id}", status_code=204, response_class=Response)
def delete_item(item_id: ItemId, service: ServiceDep, _: WriteKey) -> Response:
    """Delete an item and its events; it is never recommended again."""
    service.delete_item(item_id)
    return Response(status_code=204)


@router.get("/{item_id}/similar", response_model=SimilarOut)
def similar(item_id: ItemId, service: ServiceDep, k: K, _: ReadKey) -> SimilarOut:
    """The k items most like this one, by the serving model."""
    items = service.similar_items(item_id, k)
    return SimilarOut(item=item_id, items=[RecommendationOut.model_validate(r) for r in items])
