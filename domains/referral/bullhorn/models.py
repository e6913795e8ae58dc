"""Bullhorn records as the referral domain accepts them, and how they map to its tables."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: StrictInt
    dateAdded: StrictInt | None = None  # noqa: N815 (Bullhorn's field names)
    dateLastModified: StrictInt  # noqa: N815
    isDeleted: StrictBool = False  # noqa: N815


class Candidate(_Record):
    firstName: str | None = None  # noqa: N815
    lastName: str | None = None  # noqa: N815
    email: str | None = None
    skillSet: str | None = None  # noqa: N815
    description: str | None = None
    status: str | None = None


class JobOrder(_Record):
    title: str | None = None
    description: str | None = None
    publicDescription: str | None = None  # noqa: N815
    skillList: str | None = None  # noqa: N815
    isOpen: StrictBool = True  # noqa: N815
    isPublic: StrictBool | None = None  # noqa: N815


def _ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def candidate_text(c: Candidate) -> str:
    return f"{c.skillSet or ''}. {c.description or ''}".strip()


def position_text(j: JobOrder) -> str:
    return f"{j.title or ''}. {j.skillList or ''}. {j.description or ''}".strip()


CANDIDATE_COLUMNS = ["id", "first_name", "last_name", "email", "skill_set", "description", "status",
                     "date_added", "date_last_modified", "is_deleted", "content_hash"]
POSITION_COLUMNS = ["id", "title", "description", "public_description", "skill_list", "is_open", "is_public",
                    "is_deleted", "date_added", "date_last_modified", "content_hash"]


def candidate_row(c: Candidate) -> tuple:
    return (c.id, c.firstName, c.lastName, c.email, c.skillSet, c.description, c.status,
            _ts(c.dateAdded), _ts(c.dateLastModified), c.isDeleted, _hash(candidate_text(c)))


def position_row(j: JobOrder) -> tuple:
    return (j.id, j.title, j.description, j.publicDescription, j.skillList, j.isOpen, j.isPublic,
            j.isDeleted, _ts(j.dateAdded), _ts(j.dateLastModified), _hash(position_text(j)))


def problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


def record_key(raw: dict[str, Any]) -> tuple[int, int] | None:
    """(dateLastModified, id) when both are well-typed: the keyset cursor, even for a rejected row."""
    dlm, rid = raw.get("dateLastModified"), raw.get("id")
    if type(dlm) is int and type(rid) is int:
        return (dlm, rid)
    return None
