"""`python -m daemon ...` is `chatsync ...`."""

from daemon.cli import main

main()
