"""`architect admin ...`: the run-time controls of a running daemon, through its admin
listener (found from the same ini file's `[admin] listen`, with its `admin_token`).

    architect admin state                      the monitor's snapshot, as JSON
    architect admin metrics                    the Prometheus metrics, as text
    architect admin settings                   the limits in force
    architect admin set KEY=VALUE...           change maximum_units_per_worker,
                                               allowed_concurrent, timeout (kept with the
                                               run; VALUE null: back to the ini's)
    architect admin reset KEY...               back to the ini file's value
    architect admin expire AGENT_ID            end an agent (its unit back to the pool)
    architect admin block WORKER               refuse every registration of a worker
    architect admin unblock WORKER
    architect admin grant WORKER QUALIFICATION [VALUE]
    architect admin revoke WORKER QUALIFICATION
    architect admin add-units FILE             add assignments (a JSON list of objects, or
                                               JSONL) after the run's last one

Plain HTTP from the standard library (admin/transport.py): a command is one request, and
needs no reactor. The listener may be `tcp:`, `unix:` (the socket file) or `ssl:` (its own
certificate, named in the ini file, is pinned: a self-signed one works, no other does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from architect.admin.transport import AdminUnreachable, request
from architect.config import Config, read_units_file
from architect.endpoints import admin_target

TIMEOUT = 30.0  # seconds a command waits for the daemon


class AdminError(Exception):
    """One line for the user."""


def add_commands(sub: argparse.ArgumentParser) -> None:
    """The `admin` command's own subcommands, on its parser."""
    actions = sub.add_subparsers(dest="action", required=True)
    actions.add_parser("state", help="print the monitor's snapshot (JSON)")
    actions.add_parser("metrics", help="print the Prometheus metrics")
    actions.add_parser("settings", help="print the limits in force")
    change = actions.add_parser("set", help="change limits (kept with the run across restarts)")
    change.add_argument(
        "changes", nargs="+", metavar="KEY=VALUE", help="maximum_units_per_worker, ..."
    )
    reset = actions.add_parser("reset", help="return limits to the ini file's values")
    reset.add_argument("keys", nargs="+", metavar="KEY", help="maximum_units_per_worker, ...")
    expire = actions.add_parser("expire", help="end an agent; its unit goes back to the pool")
    expire.add_argument("agent_id")
    more = actions.add_parser("add-units", help="add assignments to the running run")
    more.add_argument("file", help="a JSON list of assignment data objects, or JSONL")
    for name, summary in (
        ("block", "refuse every registration of a worker"),
        ("unblock", "take a worker's block away"),
        ("grant", "give a worker a qualification (VALUE is JSON, or else text)"),
        ("revoke", "take a qualification from a worker"),
    ):
        action = actions.add_parser(name, help=summary)
        action.add_argument("--provider", default="mock", help="the worker's provider_type")
        action.add_argument("worker", help="the worker's name")
        if name in ("grant", "revoke"):
            action.add_argument("qualification")
        if name == "grant":
            action.add_argument("value", nargs="?", default="1", help="default: 1")
    for action in actions.choices.values():  # `admin ACTION --config F` as `admin --config F`
        action.add_argument(
            "--config", "-c", default=argparse.SUPPRESS, help="the daemon's ini file"
        )


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _request(config: Config, method: str, path: str, body: Any = None) -> tuple[bytes, str]:
    if not config.admin.listen:
        raise AdminError(
            f"{config.path}: [admin] listen is not set: the daemon has no admin listener"
        )
    try:
        target = admin_target(config.admin.listen)
    except ValueError as e:
        raise AdminError(f"{config.path}: [admin] listen: {e}") from None
    headers = {"Content-Type": "application/json"}
    if config.admin.admin_token:
        headers["Authorization"] = f"Bearer {config.admin.admin_token}"
    data = json.dumps(body).encode("utf-8") if body is not None else None
    try:
        code, raw, kind = request(target, method, path, data, headers, TIMEOUT)
    except AdminUnreachable as e:
        raise AdminError(f"cannot reach the admin listener at {target.url}: {e}") from None
    if code >= 400:
        try:
            message = json.loads(raw).get("error", f"HTTP {code}")
        except (ValueError, AttributeError):
            message = f"HTTP {code}"
        raise AdminError(f"the daemon answered {code}: {message}")
    return raw, kind


def _body(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The control and its JSON body of an acting command."""
    if args.action == "expire":
        return "expire_agent", {"agent_id": args.agent_id}
    if args.action == "set":
        changes: dict[str, Any] = {}
        for change in args.changes:
            key, sep, value = change.partition("=")
            if not sep:
                raise AdminError(f"{change!r} is not KEY=VALUE")
            try:
                changes[key] = json.loads(value)
            except ValueError:
                raise AdminError(f"{change!r}: the value must be a number") from None
        return "settings", changes
    if args.action == "reset":
        return "settings", dict.fromkeys(args.keys)
    if args.action == "add-units":
        try:
            units = read_units_file(args.file, Path.cwd())
        except ValueError as e:
            raise AdminError(str(e)) from None
        return "add_units", {"units": list(units or ())}
    worker = {"worker": args.worker, "provider": args.provider}
    if args.action in ("block", "unblock"):
        return f"{args.action}_worker", worker
    if args.action == "grant":
        value = _json_or_text(args.value)
        return "grant", {**worker, "qualification": args.qualification, "value": value}
    return "revoke", {**worker, "qualification": args.qualification}


def run(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout) -> int:
    """Do one admin command; 0, or 1 with one line on stderr."""
    try:
        if args.action in ("state", "metrics", "settings"):
            raw, _ = _request(config, "GET", "/" + args.action)
            if args.action == "metrics":
                out.write(raw.decode("utf-8"))
            else:
                out.write(json.dumps(json.loads(raw), indent=2, ensure_ascii=False) + "\n")
            return 0
        name, body = _body(args)
        raw, _ = _request(config, "POST", f"/control/{name}", body)
        out.write(json.dumps(json.loads(raw), ensure_ascii=False) + "\n")
        return 0
    except AdminError as e:
        sys.stderr.write(f"architect: {e}\n")
        return 1
