"""Bullhorn records as the referral domain accepts them, and how they map to its tables."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import IntEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

# Bullhorn's entity reference (https://bullhorn.github.io/rest-api-docs/entityref.html) types,
# as they arrive in JSON. "Not null" there means the field is always present with a value.
Integer = StrictInt
Timestamp = StrictInt  # milliseconds since the Unix epoch


String50 = Annotated[StrictStr, Field(max_length=50)]  # "String (50)"
String100 = Annotated[StrictStr, Field(max_length=100)]
Text = Annotated[StrictStr, Field(max_length=2147483647)]  # "String (2147483647)"


class PublishingStatus(IntEnum):
    """``JobOrder.isPublic``: an Integer with three allowed values (not a boolean)."""

    PUBLISHED_SUBMITTED = -1  # submitted for publishing, awaiting approval
    NOT_PUBLISHED = 0
    PUBLISHED_APPROVED = 1  # on the job board

    @property
    def label(self) -> str:
        return {-1: "published-submitted", 0: "not published", 1: "published-approved"}[self.value]


IsPublic = Annotated[StrictInt, Field(ge=-1, le=1)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Integer
    dateAdded: Timestamp  # noqa: N815 (Bullhorn's field names)
    dateLastModified: Timestamp  # noqa: N815


class Candidate(_Record):
    firstName: String50  # noqa: N815
    lastName: String50  # noqa: N815
    email: String100 | None = None
    skillSet: Text | None = None  # noqa: N815
    description: Text | None = None
    status: String100
    isDeleted: StrictBool  # noqa: N815


class JobOrder(_Record):
    title: String100 | None = None
    description: Text | None = None
    publicDescription: Text | None = None  # noqa: N815
    skillList: Text | None = None  # noqa: N815
    isOpen: StrictBool | None = None  # noqa: N815  (null: unknown; only true counts as open)
    isDeleted: StrictBool | None = None  # noqa: N815  (null: not marked deleted)
    isPublic: IsPublic | None = None  # noqa: N815

    @property
    def publishing_status(self) -> PublishingStatus | None:
        return None if self.isPublic is None else PublishingStatus(self.isPublic)


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
            bool(j.isDeleted), _ts(j.dateAdded), _ts(j.dateLastModified), _hash(position_text(j)))


def problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


def record_key(raw: dict[str, Any]) -> tuple[int, int] | None:
    """(dateLastModified, id) when both are well-typed: the keyset cursor, even for a rejected row."""
    dlm, rid = raw.get("dateLastModified"), raw.get("id")
    if type(dlm) is int and type(rid) is int:
        return (dlm, rid)
    return None
