"""`[storage] url`: which PostgreSQL database to use, as postgresql://user@host:port/dbname.

The password never goes in the url (an ini file is read by many and often committed):
it comes from `[storage] password_file`, or libpq's own means (PGPASSWORD, ~/.pgpass).
A unix socket folder is given as ?host=/run/postgresql, as libpq takes it; sslmode and
connect_timeout may be given the same way. Anything else is refused, so a typo does not
silently connect somewhere else.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

SCHEMES = ("postgresql", "postgres")
QUERY_KEYS = frozenset({"host", "sslmode", "connect_timeout", "application_name"})
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
NAME_LIMIT = 63  # PostgreSQL's identifier length


@attrs.frozen
class DatabaseUrl:
    dbname: str
    user: str | None = None
    host: str | None = None  # a name, an address, or a unix socket folder (starts with /)
    port: int | None = None
    options: tuple[tuple[str, str], ...] = ()  # the accepted query keys, but host

    def connect_args(self, password: str | None = None) -> dict[str, str | int]:
        """Keyword arguments for psycopg.connect."""
        args: dict[str, str | int] = {"dbname": self.dbname}
        if self.user is not None:
            args["user"] = self.user
        if self.host is not None:
            args["host"] = self.host
        if self.port is not None:
            args["port"] = self.port
        if password is not None:
            args["password"] = password
        args.update(dict(self.options))
        return args

    def with_dbname(self, dbname: str) -> DatabaseUrl:
        return attrs.evolve(self, dbname=dbname)

    def __str__(self) -> str:
        """The url as a user would write it (it holds nothing secret)."""
        user = f"{self.user}@" if self.user else ""
        socket = self.host is not None and self.host.startswith("/")
        where = "" if socket or self.host is None else self.host
        if self.port is not None:
            where += f":{self.port}"
        query = ([("host", self.host)] if socket and self.host else []) + list(self.options)
        tail = ("?" + "&".join(f"{k}={v}" for k, v in query)) if query else ""
        return f"postgresql://{user}{where}/{self.dbname}{tail}"


def parse_database_url(raw: str) -> DatabaseUrl:
    """The DatabaseUrl of raw; ValueError saying what is wrong."""
    raw = raw.strip()
    if len(raw) > 2000:
        raise ValueError("is too long for a database url")
    parts = urlsplit(raw)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{raw!r} must start with postgresql:// (the only engine besides SQLite)")
    if parts.fragment:
        raise ValueError("a database url has no #fragment")
    try:
        netloc_password = parts.password
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} has a port that is not a number from 0 to 65535") from None
    if netloc_password is not None:
        raise ValueError(
            "holds a password: keep it out of the ini, in [storage] password_file or PGPASSWORD"
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ValueError(f"{raw!r} must name one database: postgresql://user@host/dbname")
    _check_name(dbname, "database name")
    user = unquote(parts.username) if parts.username else None
    if user is not None:
        _check_name(user, "user name")
    host = unquote(parts.hostname) if parts.hostname else None
    options: list[tuple[str, str]] = []
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"cannot read the ?options of {raw!r}") from None
    for key, value in query:
        if key not in QUERY_KEYS:
            raise ValueError(f"unknown url option {key!r} (known: {', '.join(sorted(QUERY_KEYS))})")
        if key == "host":
            if host is not None:
                raise ValueError("gives the host twice (in the url and as ?host=)")
            if not value.startswith("/"):
                raise ValueError("?host= is for a unix socket folder, an absolute path")
            host = value
        elif key == "sslmode" and value not in SSL_MODES:
            raise ValueError(f"sslmode {value!r} is not one of {', '.join(sorted(SSL_MODES))}")
        elif key == "connect_timeout" and not (value.isdigit() and 0 < int(value) <= 3600):
            raise ValueError("connect_timeout must be whole seconds from 1 to 3600")
        else:
            options.append((key, value))
    return DatabaseUrl(dbname=dbname, user=user, host=host, port=port, options=tuple(options))


def _check_name(name: str, what: str) -> None:
    if len(name) > NAME_LIMIT or any(ord(c) < 32 for c in name):
        raise ValueError(f"the {what} {name!r} is not a PostgreSQL name (at most 63 characters)")


def read_password_file(path: Path) -> str:
    """The password in the file's first line; OSError/ValueError say what is wrong."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise ValueError(f"the password file {path} is empty")
    return password
