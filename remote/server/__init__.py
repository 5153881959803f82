"""`chatsync serve`: the HTTP sync server between devices and the database.

Devices send a Supabase access token instead of holding a database credential; the server
verifies it (auth.py) and runs the same push and pull code as the direct mode (handlers.py)
as the token's user, on a pooled connection (db.py). wire.py is the JSON contract.
live.py holds pulls open until another device's or the web app's commit for that user
(LISTEN/NOTIFY, one listening connection per process); retention.py prunes the change feed
on a schedule and records the horizon past which devices re-sync.
"""
