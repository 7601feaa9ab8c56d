"""The ``hfgit`` command: run the server and administer users, orgs, repos and tokens.

Secrets go to stdout alone (``T=$(hfgit token create …)`` works); everything else a
person should read goes to stderr. Errors exit non-zero with a message saying what to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from . import __version__, client
from .accounts import Accounts, AccountsError, InvalidInput, StorageUnavailable, parse_scope
from .config import GIT_ENGINES, MiB, Settings, parse_public_url
from .lfs.gc import collect
from .lfs.storage import open_storage
from .names import REPO_TYPES, InvalidName, RepoId
from .store import DatabaseUnavailable, SchemaOutOfDate, Store


def _store_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir", help="data directory (default: $HFGIT_DATA_DIR or ~/.local/share/hfgit)"
    )
    parent.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: $HFGIT_DATABASE_URL or sqlite in the data directory)",
    )
    return parent


def _repo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=REPO_TYPES, default="model", help="repo type")
    parser.add_argument("repo", metavar="NS/NAME")


def _read_secret_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise InvalidInput(f"Expected the {what} on standard input.")
    return line.rstrip("\r\n")


def _time(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


# Commands


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .serve import ServeOptions, serve

    if args.workers < 1 or args.threads < 1:
        raise InvalidInput("--workers and --threads need at least 1.")
    options = ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        log_format=args.log_format,
        metrics_bind=_host_port(args.metrics_bind) if args.metrics_bind else None,
    )
    if args.engine is not None:
        settings = dataclasses.replace(settings, git_engine=args.engine)
    if args.public_url:
        settings = dataclasses.replace(settings, public_url=parse_public_url(args.public_url))
    serve(settings, options)
    return 0


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as a pair, or a message saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--metrics-bind wants HOST:PORT (e.g. 127.0.0.1:9100), not {text!r}.")
    return host, int(port)


def cmd_user_add(args, settings) -> int:
    password = _read_secret_line("password") if args.password_stdin else None
    Accounts.open(settings).users.create_user(args.name, password)
    print(f"Created user {args.name}.", file=sys.stderr)
    return 0


def cmd_user_passwd(args, settings) -> int:
    Accounts.open(settings).users.set_password(args.name, _read_secret_line("password"))
    print(f"Password of {args.name} set.", file=sys.stderr)
    return 0


def cmd_user_disable(args, settings) -> int:
    changed = Accounts.open(settings).users.set_disabled(args.name, True)
    state = "disabled: its tokens and sessions are refused" if changed else "already disabled"
    print(f"User {args.name} {state}.", file=sys.stderr)
    return 0


def cmd_user_enable(args, settings) -> int:
    changed = Accounts.open(settings).users.set_disabled(args.name, False)
    print(f"User {args.name} {'enabled' if changed else 'is not disabled'}.", file=sys.stderr)
    return 0


def cmd_user_delete(args, settings) -> int:
    Accounts.open(settings).users.delete_user(args.name)
    print(f"Deleted user {args.name} with its tokens and memberships.", file=sys.stderr)
    return 0


def cmd_org_add(args, settings) -> int:
    Accounts.open(settings).users.create_org(args.name)
    print(f"Created organization {args.name}.", file=sys.stderr)
    return 0


def cmd_org_member(args, settings) -> int:
    accounts = Accounts.open(settings)
    if args.remove:
        accounts.users.remove_member(args.org, args.user)
        print(f"Removed {args.user} from {args.org}.", file=sys.stderr)
    else:
        if not args.role:
            raise InvalidInput("Give --role read|contributor|write|admin, or --remove.")
        accounts.users.set_member(args.org, args.user, args.role)
        print(f"{args.user} has the {args.role} role in {args.org}.", file=sys.stderr)
    return 0


def cmd_repo_create(args, settings) -> int:
    repo_id = RepoId.parse(args.repo, args.type)
    Accounts.open(settings).repos.create(
        repo_id, private=args.private, gated=args.gated or "off", creator=args.creator
    )
    print(f"Created {repo_id}.", file=sys.stderr)
    return 0


def cmd_repo_set(args, settings) -> int:
    repo_id = RepoId.parse(args.repo, args.type)
    record = Accounts.open(settings).repos.update(repo_id, private=args.private, gated=args.gated)
    visibility = "private" if record.facts.private else "public"
    print(f"{repo_id}: {visibility}, gated {record.facts.gated}.", file=sys.stderr)
    return 0


def cmd_repo_list(args, settings) -> int:
    records = Accounts.open(settings).repos.list()
    if args.json:
        rows = [
            {
                "type": r.facts.type,
                "id": r.facts.repo_id,
                "private": r.facts.private,
                "gated": r.facts.gated,
                "creator": r.facts.creator,
                "createdAt": r.created_at,
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for r in records:
        flags = ["private" if r.facts.private else "public"]
        if r.facts.gated != "off":
            flags.append(f"gated={r.facts.gated}")
        print(f"{r.facts.type:8} {r.facts.repo_id:40} {' '.join(flags)}")
    return 0


def cmd_repo_move(args, settings) -> int:
    old, new = RepoId.parse(args.old, args.type), RepoId.parse(args.new, args.type)
    Accounts.open(settings).repos.move(old, new)
    print(f"Moved {old} to {new.repo_id}.", file=sys.stderr)
    return 0


def cmd_repo_delete(args, settings) -> int:
    repo_id = RepoId.parse(args.repo, args.type)
    Accounts.open(settings).repos.delete(repo_id)
    print(f"Deleted {repo_id}.", file=sys.stderr)
    return 0


def cmd_repo_maintain(args, settings) -> int:
    from .server.git.maintenance import MaintenanceFailed, MaintenancePolicy, maintain
    from .server.git.refs import RepoBusy

    if bool(args.repo) == args.all:
        raise InvalidInput("Name one repository (NS/NAME) or give --all.")
    accounts = Accounts.open(settings)
    if args.all:
        records = accounts.repos.list()
    else:
        records = [accounts.repos.get(RepoId.parse(args.repo, args.type))]
    policy = MaintenancePolicy(
        max_packs=settings.repack_packs,
        max_loose=settings.repack_loose_objects,
        prune=args.prune,
    )
    failed = 0
    for record in records:
        name = f"{record.facts.type} {record.facts.repo_id}"
        try:
            path = accounts.repos.path(record)
            report = maintain(path, policy, force=args.force)
        except StorageUnavailable as error:
            failed += 1
            print(f"{name}: {error}", file=sys.stderr)
            continue
        except FileNotFoundError:
            failed += 1
            print(f"{name}: storage missing ({path})", file=sys.stderr)
            continue
        except RepoBusy:
            failed += 1
            print(f"{name}: pushes kept the repository locked; try again", file=sys.stderr)
            continue
        except MaintenanceFailed as error:
            failed += 1
            print(f"{name}: {error}", file=sys.stderr)
            continue
        before, after = report.before, report.after
        detail = f"{before.packs} packs, {before.loose} loose objects"
        if report.state == "repacked":
            detail += f" -> {after.packs} packs, {after.loose} loose objects"
        elif report.state == "busy":
            detail += "; maintenance already running, skipped"
        print(f"{name}: {report.state}: {detail}", file=sys.stderr)
    return 1 if failed else 0


def cmd_access_grant(args, settings) -> int:
    repo_id = RepoId.parse(args.repo, args.type)
    Accounts.open(settings).gated.set_access(repo_id, args.user, "accepted")
    print(f"{args.user} may now read gated {repo_id}.", file=sys.stderr)
    return 0


def cmd_token_create(args, settings) -> int:
    scopes = [parse_scope(text) for text in args.scope]
    secret, _ = Accounts.open(settings).tokens.create(
        args.user,
        args.name,
        args.role,
        scopes=scopes,
        can_read_gated=args.can_read_gated,
        expires_in_days=args.expires_in,
    )
    print(secret)
    print(
        f"Created token {args.name!r} ({args.role}) for {args.user}. It is shown only once.",
        file=sys.stderr,
    )
    return 0


def cmd_token_list(args, settings) -> int:
    records = Accounts.open(settings).tokens.list(args.user)
    if args.json:
        rows = [
            {
                "name": t.name,
                "role": t.role,
                "scopes": [
                    {"type": s.kind, "name": s.name, "permissions": sorted(s.permissions)}
                    for s in t.scopes
                ],
                "canReadGatedRepos": t.can_read_gated,
                "last4": t.last4,
                "createdAt": t.created_at,
                "expiresAt": t.expires_at,
                "lastUsedAt": t.last_used_at,
            }
            for t in records
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for t in records:
        scopes = ", ".join(f"{s.kind}:{s.name}={'+'.join(sorted(s.permissions))}" for s in t.scopes)
        print(
            f"{t.name:20} {t.role:12} ...{t.last4}  created {_time(t.created_at)}  "
            f"last used {_time(t.last_used_at)}  expires {_time(t.expires_at)}"
            + (f"  scopes: {scopes}" if scopes else "")
        )
    return 0


def cmd_token_refresh(args, settings) -> int:
    print(Accounts.open(settings).tokens.refresh(args.user, args.name))
    print(f"Refreshed {args.name!r}: the old value no longer works.", file=sys.stderr)
    return 0


def cmd_token_delete(args, settings) -> int:
    Accounts.open(settings).tokens.delete(args.user, args.name)
    print(f"Deleted token {args.name!r} of {args.user}.", file=sys.stderr)
    return 0


def cmd_lfs_gc(args, settings) -> int:
    if args.grace_hours < 0:
        raise InvalidInput("--grace-hours cannot be negative.")
    report = collect(
        open_storage(settings),
        Accounts.open(settings).store,
        grace_seconds=args.grace_hours * 3600,
        dry_run=args.dry_run,
    )
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"LFS: examined {report.examined} objects, {verb} {report.removed} "
        f"({report.freed_bytes / MiB:.1f} MiB) that no repository holds; kept "
        f"{report.kept_recent} younger than {args.grace_hours:g} hours.",
        file=sys.stderr,
    )
    return 0


def _since(text: str) -> float:
    """An ISO 8601 date or time as a timestamp; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--since wants an ISO 8601 date or time (2025-01-31 or 2025-01-31T12:00:00Z), "
            f"not {text!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def cmd_audit(args, settings) -> int:
    repo = RepoId.parse(args.repo, args.type) if args.repo else None
    since = _since(args.since) if args.since else None
    entries = Accounts.open(settings).audit.read(user=args.user, repo=repo, since=since)
    for entry in entries:
        for line in entry.lines():
            if args.json:
                print(json.dumps(line))
                continue
            fields = [line.pop("time"), line.pop("event")]
            detail = line.pop("detail", {})
            fields += [f"{key}={_quoted(value)}" for key, value in {**line, **detail}.items()]
            print("  ".join(fields))
    return 0


def _quoted(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text) if not text or " " in text else text


def _open_store(settings: Settings) -> Store:
    if settings.embedded_database:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Store(settings.database_url)


def cmd_db_upgrade(args, settings) -> int:
    store = _open_store(settings)
    before = store.revision()
    store.upgrade()
    after = store.revision()
    if before == after:
        print(f"The database is at revision {after} already.", file=sys.stderr)
    else:
        print(f"Upgraded the database from {before or 'empty'} to {after}.", file=sys.stderr)
    store.dispose()
    return 0


def cmd_db_current(args, settings) -> int:
    store = _open_store(settings)
    print(store.revision() or "none")
    try:
        store.require_current()
    except SchemaOutOfDate as behind:
        print(str(behind), file=sys.stderr)
    store.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    store = _store_options()
    parser = argparse.ArgumentParser(
        prog="hfgit", description="Git smart HTTP with Hugging Face-style user access tokens."
    )
    parser.add_argument("--version", action="version", version=f"hfgit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[store], help="run the gatekeeper")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--workers", type=int, default=2, help="worker processes")
    serve.add_argument("--threads", type=int, default=8, help="threads per worker process")
    serve.add_argument(
        "--engine",
        choices=GIT_ENGINES,
        help="what answers fetches: git (C git), dulwich, or auto, the default: git when "
        "a git binary is on PATH (default: $HFGIT_GIT_ENGINE or auto)",
    )
    serve.add_argument(
        "--public-url",
        help="URL clients reach this server at, for the absolute URLs it hands out "
        "(default: HFGIT_PUBLIC_URL, else the listening address)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="access and error log lines as gunicorn's text or one JSON object each",
    )
    serve.add_argument(
        "--metrics-bind",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on this separate listener (default: none)",
    )
    serve.set_defaults(func=cmd_serve)

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = user.add_parser("add", parents=[store], help="create a user")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read a password from stdin")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("passwd", parents=[store], help="set a user's password from stdin")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_passwd)
    p = user.add_parser("disable", parents=[store], help="refuse a user's tokens and sessions")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_disable)
    p = user.add_parser("enable", parents=[store], help="accept a disabled user again")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_enable)
    p = user.add_parser(
        "delete", parents=[store], help="delete a user (their repositories must be moved first)"
    )
    p.add_argument("name")
    p.set_defaults(func=cmd_user_delete)

    org = commands.add_parser("org", help="manage organizations").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = org.add_parser("add", parents=[store], help="create an organization")
    p.add_argument("name")
    p.set_defaults(func=cmd_org_add)
    p = org.add_parser("member", parents=[store], help="set or remove a member's role")
    p.add_argument("org")
    p.add_argument("user")
    p.add_argument("--role", choices=("read", "contributor", "write", "admin"))
    p.add_argument("--remove", action="store_true", help="remove the member")
    p.set_defaults(func=cmd_org_member)

    repo = commands.add_parser("repo", help="manage repositories").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = repo.add_parser("create", parents=[store], help="create a repository")
    _repo_arguments(p)
    p.add_argument("--private", action="store_true")
    p.add_argument("--gated", choices=("auto", "manual"))
    p.add_argument("--creator", help="user recorded as creator (for org contributors)")
    p.set_defaults(func=cmd_repo_create)
    p = repo.add_parser("set", parents=[store], help="change visibility or gating")
    _repo_arguments(p)
    visibility = p.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=None)
    visibility.add_argument("--public", dest="private", action="store_false")
    p.add_argument("--gated", choices=("auto", "manual", "off"))
    p.set_defaults(func=cmd_repo_set)
    p = repo.add_parser("list", parents=[store], help="list repositories")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_repo_list)
    p = repo.add_parser(
        "move", parents=[store], help="rename a repository or move it to another namespace"
    )
    p.add_argument("--type", choices=REPO_TYPES, default="model", help="repo type")
    p.add_argument("old", metavar="OLD_NS/NAME")
    p.add_argument("new", metavar="NEW_NS/NAME")
    p.set_defaults(func=cmd_repo_move)
    p = repo.add_parser("delete", parents=[store], help="delete a repository and its data")
    _repo_arguments(p)
    p.set_defaults(func=cmd_repo_delete)
    p = repo.add_parser(
        "maintain",
        parents=[store],
        help="repack repositories with many packs or loose objects (never loses objects)",
    )
    p.add_argument("--type", choices=REPO_TYPES, default="model", help="repo type")
    p.add_argument("repo", metavar="NS/NAME", nargs="?")
    p.add_argument("--all", action="store_true", help="every repository")
    p.add_argument("--force", action="store_true", help="repack even if not due")
    p.add_argument(
        "--prune",
        action="store_true",
        help="also drop unreachable objects older than two weeks (git's gc.pruneExpire)",
    )
    p.set_defaults(func=cmd_repo_maintain)

    access = commands.add_parser("access", help="gated access").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = access.add_parser("grant", parents=[store], help="let a user read a gated repo")
    _repo_arguments(p)
    p.add_argument("user")
    p.set_defaults(func=cmd_access_grant)

    token = commands.add_parser("token", help="manage user access tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = token.add_parser("create", parents=[store], help="create a token (printed once)")
    p.add_argument("user")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=("read", "write", "fineGrained"))
    p.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="KIND:ENTITY=PERM[,PERM]",
        help="fine-grained scope, e.g. model:alice/bert=repo.content.read,repo.write",
    )
    p.add_argument("--can-read-gated", action="store_true")
    p.add_argument("--expires-in", type=float, metavar="DAYS")
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("list", parents=[store], help="list a user's tokens")
    p.add_argument("user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token_list)
    p = token.add_parser("refresh", parents=[store], help="new secret, same name and scopes")
    p.add_argument("user")
    p.add_argument("name")
    p.set_defaults(func=cmd_token_refresh)
    p = token.add_parser("delete", parents=[store], help="delete a token")
    p.add_argument("user")
    p.add_argument("name")
    p.set_defaults(func=cmd_token_delete)

    lfs = commands.add_parser("lfs", help="Git LFS storage").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = lfs.add_parser(
        "gc", parents=[store], help="remove stored LFS objects no repository holds any more"
    )
    p.add_argument(
        "--grace-hours",
        type=float,
        default=24,
        help="keep objects younger than this, e.g. uploads still in flight (default: 24)",
    )
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    p.set_defaults(func=cmd_lfs_gc)

    p = commands.add_parser("audit", parents=[store], help="list audit events, oldest first")
    p.add_argument("--user", metavar="NAME", help="only events by or about this user")
    p.add_argument("--repo", metavar="NS/NAME", help="only events on this repository")
    p.add_argument("--type", choices=REPO_TYPES, default="model", help="type of --repo")
    p.add_argument("--since", metavar="ISO", help="only events at this date or time or later")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_audit)

    db = commands.add_parser("db", help="the database schema").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = db.add_parser(
        "upgrade", parents=[store], help="migrate the schema to this release's (idempotent)"
    )
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("current", parents=[store], help="print the schema revision")
    p.set_defaults(func=cmd_db_current)

    client.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "data_dir"):
        return args.func(args)
    try:
        settings = Settings.load(args.data_dir, args.database_url)
        return args.func(args, settings)
    except (AccountsError, InvalidName, SchemaOutOfDate, StorageUnavailable, ValueError) as exc:
        print(f"hfgit: error: {exc}", file=sys.stderr)
        return 1
    except DatabaseUnavailable:
        print(
            "hfgit: error: cannot reach the database; check --database-url / "
            "HFGIT_DATABASE_URL and that the server is running.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
