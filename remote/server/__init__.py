"""`chatsync serve`: the HTTP sync server between devices and the database.

Devices send a Supabase access token instead of holding a database credential; the server
verifies it (auth.py) and runs the same push and pull code as the direct mode (handlers.py)
as the token's user, on a pooled connection (db.py). wire.py is the JSON contract.
"""
