"""Errors raised by the local store."""


class StoreError(Exception):
    """Base class for local store errors."""


class InvalidRow(StoreError):
    """A write was refused by the store's constraints; the message names the field."""


class NotFound(StoreError):
    """The conversation or message does not exist."""


class SchemaTooNew(StoreError):
    """The store file was written by a newer chatsync than this one."""
