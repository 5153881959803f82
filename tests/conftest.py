"""The tests' fixtures live in pytest plugins, `tests/fix_*.py`, built on the helpers of
`tests/support/` (which the benchmarks use too):

- fix_pg: admin_dsn, full_template, remote_dsn, original_dsn, remote (a real PostgreSQL);
- fix_stores: store_path, store, devices (direct devices on the remote);
- fix_daemon: spawn (real `chatsync run` processes);
- fix_server: server (a real `chatsync serve`), auth (the auth stand-in).
"""

pytest_plugins = ["tests.fix_pg", "tests.fix_stores", "tests.fix_daemon", "tests.fix_server"]
