"""API key management (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, status
from pydantic import BaseModel, Field

from shopstream.api.deps import Admin, Database
from shopstream.api.keys import Role, create_key, expiry, list_keys, revoke_key
from shopstream.api.v1.params import PRINTABLE

router = APIRouter(prefix="/api/v1", tags=["keys"])


class KeyInfo(BaseModel):
    key_id: int
    name: str
    role: Role
    key_prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class NewKey(BaseModel):
    role: Role
    name: str = Field(default="api", min_length=1, max_length=100, pattern=PRINTABLE)
    expires_days: float | None = Field(default=None, gt=0, le=3650)


class CreatedKey(BaseModel):
    key_id: int
    key: str = Field(description="Shown once; only its digest is stored.")


@router.get("/apikeys", response_model=list[KeyInfo])
def keys(_: Admin, db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list_keys(conn)


@router.post("/apikeys", response_model=CreatedKey, status_code=status.HTTP_201_CREATED)
def new_key(_: Admin, db: Database, body: Annotated[NewKey, Body()]) -> CreatedKey:
    with db.connection() as conn:
        key_id, key = create_key(conn, body.role, body.name, expiry(body.expires_days))
        conn.commit()
        return CreatedKey(key_id=key_id, key=key)


@router.delete("/apikeys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke(_: Admin, db: Database, key_id: Annotated[int, Path(ge=1)]) -> None:
    with db.connection() as conn:
        if not revoke_key(conn, key_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active key")
        conn.commit()
