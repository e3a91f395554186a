"""The schema's .sql files: vN.sql builds version N from nothing, upgrade_vN_to_vM.sql moves N to M.

A new database gets the newest full schema in one go; an existing one is
brought forward one upgrade step at a time, in place, so nothing stored is
lost. `schema_plan` is that rule, for every engine (each runs the steps in its own
words and transaction). To change the schema: write v(N+1).sql (the whole schema) and
upgrade_vN_to_v(N+1).sql (the step), then raise SCHEMA_VERSION.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from architect.storage.interface import SchemaError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_VERSION = 4


@attrs.frozen
class SchemaStep:
    version: int  # the version the database has once the step has run
    sql: str
    path: Path  # the file it was read from, for the errors that name it


@attrs.frozen
class SchemaPlan:
    current: int | None  # the database's version; None for a new (empty) database
    steps: list[SchemaStep]


def version_statements(version: int) -> list[str]:
    """The SQL that records the version a step reached (an int: in the text, no parameter)."""
    return [
        "DELETE FROM schema_version",
        f"INSERT INTO schema_version (version) VALUES ({int(version):d})",
    ]


def schema_plan(
    tables: set[str], cursor: Any, target: int, schema_dir: Path = SCHEMA_DIR
) -> SchemaPlan:
    """How a database holding `tables` gets schema `target`, the same on every engine: an
    empty one the full schema in one go, one of ours each upgrade step from its version
    (read with the DB-API `cursor` from schema_version), anything else a SchemaError."""
    if "schema_version" not in tables:
        if tables:
            raise SchemaError("the database holds tables but no schema_version: not ours")
        path = schema_dir / f"v{target}.sql"
        return SchemaPlan(None, [SchemaStep(target, full_schema(target, schema_dir), path)])
    cursor.execute("SELECT version FROM schema_version")
    rows = cursor.fetchall()
    if len(rows) != 1:
        raise SchemaError(f"schema_version holds {len(rows)} rows instead of one")
    current = int(rows[0][0])
    return SchemaPlan(current, upgrade_steps(current, target, schema_dir))


def full_schema(version: int, schema_dir: Path = SCHEMA_DIR) -> str:
    """The SQL that creates schema `version` in an empty database."""
    return _read(schema_dir / f"v{version}.sql")


def upgrade_steps(current: int, target: int, schema_dir: Path = SCHEMA_DIR) -> list[SchemaStep]:
    """The steps from `current` to `target`, in order.

    Every step is read before any is run: a missing one is a SchemaError.
    """
    if current > target:
        raise SchemaError(
            f"the database has schema version {current}, newer than this Architect knows"
            f" ({target}); use a newer Architect"
        )
    steps = []
    for version in range(current, target):
        path = schema_dir / f"upgrade_v{version}_to_v{version + 1}.sql"
        steps.append(SchemaStep(version + 1, _read(path), path))
    return steps


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"missing schema file {path}") from None
    except OSError as e:
        raise SchemaError(f"cannot read schema file {path}: {e.strerror}") from None
