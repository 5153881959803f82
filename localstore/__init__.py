"""The local SQLite chat store: schema, change tracking and the client API."""

from localstore.connection import SCHEMA_VERSION, connect
from localstore.errors import InvalidRow, NotFound, SchemaTooNew, StoreError
from localstore.models import AuthSession, Conversation, Message
from localstore.store import Store

__all__ = [
    "SCHEMA_VERSION",
    "AuthSession",
    "Conversation",
    "InvalidRow",
    "Message",
    "NotFound",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "connect",
]
