"""The `chatsync` command line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import click
import psycopg
from rich.console import Console
from rich.table import Table

from daemon.config import Config, ConfigError, load_config
from daemon.engine import SyncEngine
from daemon.settings import remote_dsn
from localstore import InvalidRow, NotFound, Store, StoreError
from localstore.outbox import Outbox
from remote.connect import connect, mask_dsn
from remote.errors import explain
from remote.migrate import MigrationError, migrate

console = Console()


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
        return Store(self.config.local.resolved_path)


pass_ctx = click.make_pass_decorator(_Context)


@click.group()
@click.option("--config", "config_path", metavar="PATH", envvar="CHATSYNC_CONFIG",
              help="config.toml to use (default: $CHATSYNC_CONFIG, then the user config dir)")
@click.option("-v", "--verbose", is_flag=True, help="log debug detail to stderr")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Offline-first sync of a local SQLite chat store to PostgreSQL."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = _Context(config_path)


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
    """Sync once, now, and print what was sent."""
    config = ctx.config
    engine = SyncEngine(
        config.local.resolved_path, remote_dsn(config), batch_size=config.sync.batch_size
    )
    try:
        report = engine.sync()
    finally:
        engine.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print status as JSON")
@pass_ctx
def status(ctx: _Context, as_json: bool) -> None:
    """Who is signed in, what is pending, what is quarantined."""
    data = store_status(ctx.config)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_row("store", data["store"])
    table.add_row("remote", data["remote"])
    table.add_row("signed in", data["signed_in"] or "no one")
    pending = data["pending"]
    table.add_row(
        "pending",
        f"{pending['conversations']} conversations, {pending['messages']} messages, "
        f"{pending['deletions']} deletions",
    )
    if pending["oldest_age_s"] is not None:
        table.add_row("oldest pending", f"{pending['oldest_age_s']:.0f}s ago")
    table.add_row("quarantined", str(len(data["quarantined"])))
    console.print(table)
    for q in data["quarantined"]:
        console.print(f"  {q['kind']} {q['id']}: {q['reason']}", markup=False)


def store_status(config: Config) -> dict[str, Any]:
    """Status as the store alone can tell it (no daemon, no remote)."""
    with Store(config.local.resolved_path) as store:
        session = store.signed_in()
        outbox = Outbox(store.conn)
        pending = outbox.pending(session.user_id) if session else None
        oldest_age = None
        if pending and pending.oldest:
            oldest = datetime.fromisoformat(pending.oldest.replace("Z", "+00:00"))
            oldest_age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        return {
            "store": str(store.path),
            "remote": mask_dsn(config.remote.dsn) if config.remote.dsn else "embedded",
            "signed_in": session.user_id if session else None,
            "email": session.email if session else None,
            "pending": {
                "conversations": pending.conversations if pending else 0,
                "messages": pending.messages if pending else 0,
                "deletions": pending.deletions if pending else 0,
                "oldest_age_s": oldest_age,
            },
            "anonymous_conversations": outbox.anonymous_conversations(),
            "quarantined": outbox.quarantined(),
        }


@cli.command("retry-quarantined")
@pass_ctx
def retry_quarantined(ctx: _Context) -> None:
    """Release every quarantined row so the next sync tries it again."""
    with ctx.store() as store:
        n = Outbox(store.conn).release_quarantine()
    click.echo(f"released {n} quarantined row(s)")


@cli.command("sign-in")
@click.argument("user_id")
@click.option("--email", default="", help="the account's email")
@pass_ctx
def sign_in(ctx: _Context, user_id: str, email: str) -> None:
    """Sign USER_ID (a UUID) in on this store."""
    with ctx.store() as store:
        store.sign_in(user_id, email)
    click.echo(f"signed in as {user_id}")


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
    """Entry point: expected failures become one clear line and exit status 1 or 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"chatsync: configuration error: {exc}", err=True)
        sys.exit(2)
    except (InvalidRow, NotFound) as exc:
        click.echo(f"chatsync: {exc}", err=True)
        sys.exit(1)
    except (StoreError, MigrationError) as exc:
        click.echo(f"chatsync: {exc}", err=True)
        sys.exit(1)
    except psycopg.Error as exc:
        click.echo(f"chatsync: {explain(exc)}", err=True)
        sys.exit(1)
