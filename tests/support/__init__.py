"""What the tests and the benchmarks share: helpers, no fixtures (those are the tests'
`tests/fix_*.py` pytest plugins, built on these).

- `pg`: finding a PostgreSQL server, throwaway databases, the tests' SQL files;
- `stores`: store files filled with plain SQL, random edits, the converged end state;
- `devices`: direct devices (store + engine), HTTP devices, comparable views of both ends;
- `daemons`: one `chatsync run` wrapper, its config, one-shot `chatsync` commands;
- `servers`: one `chatsync serve` wrapper, signing keys, a JWKS endpoint, push bodies;
- `remote_facts`: what is on the remote, and the truth its usage figures must equal;
- `pgbouncer`: PgBouncer in transaction mode; `procs`: waiting, free ports, process groups;
- `endpoint`: an emulation of the web app's original sync endpoint (the baseline);
- `auth_standin`: a local stand-in of the auth server; `faults_proxy`: a cutting TCP proxy.

The benchmarks import this package; nothing here imports the benchmarks or the tests.
"""

ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
BOB = "bbbbbbbb-0000-4000-8000-000000000002"
