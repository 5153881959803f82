"""The `chatsync` command line.

A person types `chatsync status` or `chatsync sync-now` and expects an answer at once, so
each command imports what it needs itself: psycopg, pydantic, rich and sqlite-utils each
take a noticeable fraction of a second to import, and most commands need few of them.

Exit statuses (scripts rely on them):

- 0: done;
- 1 (`EXIT_FAILED`): the command could not do its work: a failed sync, a store or remote
  error, a second daemon on the same store; one line on stderr says why;
- 2 (`EXIT_USAGE`): a bad command line (click's usage errors) or an unusable configuration,
  naming the key;
- 130 (`EXIT_INTERRUPTED`): interrupted (Ctrl-C).

Expected failures are `click.ClickException`s, so click prints them and exits; anything
else is a defect and keeps its traceback for a bug report.
"""

from __future__ import annotations

import json
import sys
from typing import IO, TYPE_CHECKING, Any

import click

# The control socket's client only (control.py is the daemon's server side, heavier).
from daemon import control_client as control
from daemon.config import Config, ConfigError, load_config
from daemon.protocol import BY_DAEMON, BY_THIS_PROCESS, ErrorReply, Status, SyncReply

if TYPE_CHECKING:
    from daemon.report import SyncReport
    from daemon.watch import WatchMode
    from localstore import Store


EXIT_FAILED = 1
EXIT_USAGE = 2  # click.UsageError's own exit status
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class Failed(click.ClickException):
    """The command could not do its work; printed as `chatsync: <why>`."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"chatsync: {self.format_message()}", err=True)


class ConfigurationError(Failed):
    """The configuration is unusable (the message names the file and the key)."""

    exit_code = EXIT_USAGE

    def format_message(self) -> str:
        return f"configuration error: {self.message}"


class Interrupted(click.ClickException):
    """Ctrl-C: nothing to explain."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted")

    def show(self, file: IO[Any] | None = None) -> None:
        pass


class _Group(click.Group):
    """Turns the failures a person can act on into click exceptions (see the docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except (click.exceptions.Abort, KeyboardInterrupt):
            raise Interrupted() from None
        except ConfigError as exc:
            raise ConfigurationError(str(exc)) from None
        except Exception as exc:
            message = _expected_failure(exc)
            if message is None:
                raise
            raise Failed(message) from None


class _Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        from localstore import Store

        return Store(self.config.local.resolved_path)


pass_ctx = click.make_pass_decorator(_Context)


@click.group(cls=_Group)
@click.option("--config", "config_path", metavar="PATH", envvar="CHATSYNC_CONFIG",
              help="config.toml to use (default: $CHATSYNC_CONFIG, then the user config dir)")
@click.option("-v", "--verbose", is_flag=True, help="log debug detail to stderr")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Offline-first sync of a local SQLite chat store to PostgreSQL."""
    # `status` and `sync-now` through the daemon never log, and importing logging is a
    # noticeable part of their time; the in-process sync they may fall back to sets it up.
    if verbose or ctx.invoked_subcommand not in ("status", "sync-now"):
        _configure_logging(verbose)
    ctx.obj = _Context(config_path)


def _configure_logging(verbose: bool = False) -> None:
    import logging

    logging.basicConfig(  # a no-op once configured
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@pass_ctx
def init(ctx: _Context) -> None:
    """Create the local store (or migrate an older one)."""
    with ctx.store() as store:
        click.echo(f"store ready at {store.path}")


@cli.command("migrate")
@click.option("--corrected-analytics", is_flag=True,
              help="on an existing deployment, also replace the app's analytics triggers")
@pass_ctx
def migrate_cmd(ctx: _Context, corrected_analytics: bool) -> None:
    """Apply the remote schema migrations."""
    from daemon.settings import remote_dsn
    from remote.connect import connect
    from remote.dsn import mask_dsn
    from remote.migrate import migrate

    dsn = remote_dsn(ctx.config)
    with connect(dsn) as conn:
        outcomes = migrate(conn, corrected_analytics=corrected_analytics)
    if not outcomes:
        click.echo(f"{mask_dsn(dsn)}: up to date")
    for o in outcomes:
        click.echo(f"{o.version:04d}_{o.name}: {o.action}")


@cli.command("sync-now")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@pass_ctx
def sync_now(ctx: _Context, as_json: bool) -> None:
    """Sync once, now, and print what was sent.

    Asks the running daemon (which skips any back-off); with no daemon, syncs in-process.
    """
    config = ctx.config
    reply = control.post_sync(config.daemon.resolved_socket)
    if not isinstance(reply, SyncReply):
        if isinstance(reply, ErrorReply):  # a daemon that is stopping: do it here instead
            click.echo(f"chatsync: the daemon said: {reply.error}", err=True)
        reply = SyncReply.of(_sync_in_process(config), BY_THIS_PROCESS)
    if as_json:
        click.echo(json.dumps(reply.to_json(), indent=2))
    elif not reply.outcome.failed:
        click.echo(f"{reply.summary} "
                   f"({'by the daemon' if reply.by == BY_DAEMON else 'in-process'})")
    if reply.outcome.failed:
        kind = "temporary; try again later" if reply.outcome.transient else "needs attention"
        raise Failed(f"{reply.summary} ({kind})")


def _sync_in_process(config: Config) -> SyncReport:
    # No store lock: a daemon may start meanwhile, and concurrent syncs are safe (marks are
    # compare-and-set, re-sends are no-ops).
    _configure_logging()
    from daemon.progress import TerminalProgress
    from daemon.settings import make_engine

    bar = TerminalProgress(min_rows=config.sync.batch_size)
    engine = make_engine(config, progress=bar.advance)
    try:
        bar.begin(config.local.resolved_path)
        return engine.sync()
    finally:
        bar.end()
        engine.close()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print status as JSON")
@pass_ctx
def status(ctx: _Context, as_json: bool) -> None:
    """The daemon's live view (state, last and next sync), or the store's when it is down."""
    config = ctx.config
    answer = control.get_status(config.daemon.resolved_socket)
    if answer is None:
        from daemon.status import store_status

        answer = Status(store_status(config.local.resolved_path, config.remote.label), None)
    if as_json:
        click.echo(json.dumps(answer.to_json(), indent=2))
    else:
        from rich.console import Console

        from daemon.status import render

        render(answer, Console())


@cli.command()
@click.option("--watch", "watch_mode", default="auto", show_default=True,
              type=click.Choice(["auto", "native", "polling", "off"]),
              help="edits: native file events (falling back to polling), polling, or off "
                   "(schedule and sync-now only)")
@pass_ctx
def run(ctx: _Context, watch_mode: WatchMode) -> None:
    """Run the sync daemon in the foreground (for systemd, launchd or a terminal)."""
    from daemon.run import run as run_daemon

    click.get_current_context().exit(run_daemon(ctx.config, watch_mode=watch_mode))


@cli.command()
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="server processes (each with its own database pool)")
@pass_ctx
def serve(ctx: _Context, workers: int) -> None:
    """Run the HTTP sync server devices sign in to (see [server] in config.toml)."""
    from remote.server.run import serve as run_server

    run_server(ctx.config, ctx.config_path, workers)


@cli.command("install-service")
@click.option("--print", "print_only", is_flag=True, help="print the unit instead of writing it")
@pass_ctx
def install_service(ctx: _Context, print_only: bool) -> None:
    """Write a systemd user unit for `chatsync run` (Type=notify)."""
    from daemon import systemd

    text = systemd.unit_text(ctx.config_path)
    if print_only:
        click.echo(text, nl=False)
        return
    path = systemd.user_unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"wrote {path}\nnow: systemctl --user daemon-reload && "
               f"systemctl --user enable --now {systemd.UNIT_NAME}")


@cli.command("retry-quarantined")
@pass_ctx
def retry_quarantined(ctx: _Context) -> None:
    """Release every quarantined row so the next sync tries it again."""
    from localstore.outbox import Outbox

    with ctx.store() as store:
        n = Outbox(store.conn).release_quarantine()
    click.echo(f"released {n} quarantined row(s)")


@cli.command("sign-in")
@click.argument("user_id", required=False)
@click.option("--email", default="", help="the account's email")
@click.option("--password-stdin", is_flag=True,
              help="read the password from standard input instead of asking")
@pass_ctx
def sign_in(ctx: _Context, user_id: str | None, email: str, password_stdin: bool) -> None:
    """Sign in on this store: as USER_ID (a UUID, direct mode), or with --email and the
    account's password at the app's auth server (remote.auth_url), for the sync server."""
    if user_id:
        with ctx.store() as store:
            store.sign_in(user_id, email)
        click.echo(f"signed in as {user_id}")
        return
    remote = ctx.config.remote
    if not email:
        raise click.UsageError("give USER_ID, or --email to sign in at the auth server")
    if not (remote.auth_url and remote.anon_key):
        raise click.UsageError("signing in with a password needs remote.auth_url and "
                               "remote.anon_key in the configuration")
    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else click.prompt("password", hide_input=True))
    from daemon.tokens import store_session
    from remote.auth_client import AuthClient, AuthRefused, AuthUnavailable

    client = AuthClient(remote.auth_url, remote.anon_key)
    try:
        tokens = client.sign_in_with_password(email, password)
    except (AuthRefused, AuthUnavailable) as exc:
        raise click.ClickException(f"sign-in failed: {exc}") from None
    finally:
        client.close()
    with ctx.store() as store:
        store_session(store.conn, tokens)
    click.echo(f"signed in as {tokens.user_id} ({tokens.email})")


@cli.command("sign-out")
@pass_ctx
def sign_out(ctx: _Context) -> None:
    """Sign out; local conversations stay, and nothing is pushed until the next sign-in."""
    with ctx.store() as store:
        store.sign_out()
    click.echo("signed out")


@cli.command("new-conversation")
@click.argument("title", default="New Chat")
@pass_ctx
def new_conversation(ctx: _Context, title: str) -> None:
    """Create a conversation; prints its id."""
    with ctx.store() as store:
        click.echo(store.create_conversation(title).id)


@cli.command("add-message")
@click.argument("conversation_id")
@click.argument("content")
@click.option("--role", type=click.Choice(["user", "assistant", "system"]), default="user")
@click.option("--model", default=None)
@click.option("--input-tokens", type=int, default=0)
@click.option("--output-tokens", type=int, default=0)
@pass_ctx
def add_message(
    ctx: _Context, conversation_id: str, content: str, role: str, model: str | None,
    input_tokens: int, output_tokens: int,
) -> None:
    """Add a message to a conversation; prints its id."""
    with ctx.store() as store:
        message = store.add_message(
            conversation_id, role, content, model=model, input_tokens=input_tokens,
            output_tokens=output_tokens, total_tokens=input_tokens + output_tokens,
        )
    click.echo(message.id)


def main() -> None:
    """Entry point (`chatsync`, `python -m daemon`); exit statuses in the module docstring."""
    cli.main()


def _expected_failure(exc: Exception) -> str | None:
    """The one line to print for a failure a person can act on, or None for a bug."""
    # Imported here: whatever raised these has imported them already.
    import psycopg

    from daemon.control import SocketInUse
    from daemon.lock import AlreadyRunning
    from localstore import StoreError
    from remote.dsn import InvalidDsn
    from remote.errors import explain
    from remote.migrate import MigrationError

    if isinstance(exc, SocketInUse):
        return f"{exc}; set daemon.socket to run another"
    if isinstance(exc, AlreadyRunning | StoreError | MigrationError | InvalidDsn):
        return str(exc)
    if isinstance(exc, psycopg.Error):
        return explain(exc)
    return None
