"""The JSON contract between devices and `chatsync serve` (version 1).

pydantic models, because pydantic is already chatsync's validator (config.py) and its
errors carry the path of the offending field (`messages[3].rev`), which becomes the 422's
`field`; `model_validate_json` parses and validates in one pass in Rust. The device's HTTP
transport can build and read these same models.

Rows are the store's: exactly the dicts `localstore.outbox` PENDING_* queries give the push
code, with the columns of the spec (localstore/columns.py). Column values keep the types
SQLite handed over (text, integer, real or null): the push code refuses a row it cannot
store *per row* (quarantine), so the wire must not turn such a row into a 422 for the
whole batch. Only the keys the server relies on are typed tightly (id, rev, was_synced,
kind).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from localstore import columns as spec

Value = StrictStr | StrictInt | StrictFloat | None
RowId = Annotated[StrictStr, Field(min_length=1, max_length=255)]  # the store limit
Rev = Annotated[StrictInt, Field(ge=0)]
# 0/1 from SQLite (`synced_rev <> 0`) or a JSON boolean
WasSynced = Literal[0, 1] | bool
# The device's store origin (daemon.engine.store_origin): its pushes are marked with it and
# its pulls skip their echoes. Not a credential: it only affects the caller's own feed.
Origin = Annotated[StrictStr, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
# pg_current_snapshot() text: xmin:xmax:xip,xip,...
Cursor = Annotated[StrictStr, Field(pattern=r"^\d{1,20}:\d{1,20}:(\d{1,20}(,\d{1,20})*)?$")]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _row_model(name: str, table: spec.Table) -> type[_Wire]:
    """A pushed row of *table*: its synced columns (id tightly typed), was_synced and rev."""
    fields: dict[str, Any] = {"id": (RowId, ...)}
    fields |= {c.name: (Value, ...) for c in table.columns[1:]}
    fields |= {"was_synced": (WasSynced, ...), "rev": (Rev, ...)}
    return create_model(name, __base__=_Wire, __module__=__name__, **fields)


if TYPE_CHECKING:
    # What the type checker knows of a row: the keys typed tightly; the rest are the spec's.
    class ConversationRow(_Wire):
        id: RowId
        was_synced: WasSynced
        rev: Rev

    class MessageRow(_Wire):
        id: RowId
        was_synced: WasSynced
        rev: Rev
else:
    ConversationRow = _row_model("ConversationRow", spec.CONVERSATIONS)
    MessageRow = _row_model("MessageRow", spec.MESSAGES)


class DeletionRow(_Wire):
    kind: Literal["conversation", "message"]
    id: RowId
    rev: Rev


class PushRequest(_Wire):
    conversations: list[ConversationRow] = []
    messages: list[MessageRow] = []
    deletions: list[DeletionRow] = []
    origin: Origin | None = None


class PullRequest(_Wire):
    cursor: Cursor | None = None
    page_size: Annotated[StrictInt, Field(ge=1, le=100_000)] = 5000
    origin: Origin | None = None
    # a full pull's next page: the messages after this id (see handlers.pull_window)
    after_message_id: StrictStr | None = None
    messages_only: bool = False  # the conversations came with the first page
    # A re-sync's full pull: messages paged in the byte order of their ids (see pull.py)
    resync: bool = False
    # A live pull: when nothing from another origin is new after the cursor, hold the
    # request up to this long (capped by server.live_wait_max_seconds) until something is.
    wait_seconds: Annotated[StrictInt | StrictFloat, Field(ge=0, le=3600)] = 0


def row_dict(row: ConversationRow | MessageRow) -> dict[str, Any]:
    """The row as the push code takes it (was_synced as 0/1, like SQLite's)."""
    data = row.model_dump()
    data["was_synced"] = int(data["was_synced"])
    return data


# Responses are plain dicts built in handlers.py; their shapes:
#
# POST /v1/push 200
#   {"conversations": KindResult, "messages": KindResult,
#    "deletions": {"acked": [{"kind": "conversation"|"message", "id": str, "rev": int}]}}
#   KindResult = {"acked": [{"id": str, "rev": int}],   # on the server now: mark synced
#                 "written": int,                        # rows inserted/updated (rest equal)
#                 "refused": [{"id": str, "rev": int, "reason": str}],  # quarantine
#                 "gone": [str]}                         # deleted elsewhere: keep dirty
# POST /v1/pull 200
#   {"changed": bool, "full": bool, "cursor": str|null, "more": bool, "message_count": int,
#    "conversations": [row], "messages": [row]}   rows as remote/pull.py yields them
#   A full pull is paged by message id: while "more", ask again with after_message_id (the
#   last id received) and messages_only; keep the first page's cursor.
#   With wait_seconds (and a cursor): answered as soon as another origin's change for the
#   user commits, else {"changed": false, …, "cursor": the request's} when the wait ends.
#   {"resync": true, "changed": true, "cursor": the request's, …no rows}: the cursor is older
#   than the feed's retention; pull in full (no cursor) and drop the local clean rows the
#   full pull does not bring (daemon/pulling.py). Absent otherwise.
# Errors (any status >= 400)
#   {"error": code, "detail": sentence} (+ "field": "messages[3].rev" on 422)
