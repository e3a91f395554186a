"""The schema's .sql files: vN.sql builds version N from nothing, upgrade_vN_to_vM.sql moves N to M.

A new database gets the newest full schema in one go; an existing one is
brought forward one upgrade step at a time, in place, so nothing stored is
lost. To change the schema: write v(N+1).sql (the whole schema) and
upgrade_vN_to_v(N+1).sql (the step), then raise SCHEMA_VERSION.
"""

from __future__ import annotations

from pathlib import Path

from architect.storage.interface import SchemaError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
SCHEMA_VERSION = 4


def full_schema(version: int, schema_dir: Path = SCHEMA_DIR) -> str:
    """The SQL that creates schema `version` in an empty database."""
    return _read(schema_dir / f"v{version}.sql")


def upgrade_steps(
    current: int, target: int, schema_dir: Path = SCHEMA_DIR
) -> list[tuple[int, str]]:
    """[(version reached, SQL of the step)] from `current` to `target`.

    Every step is read before any is run: a missing one is a SchemaError.
    """
    if current > target:
        raise SchemaError(
            f"the database has schema version {current}, newer than this Architect knows"
            f" ({target}); use a newer Architect"
        )
    return [
        (version + 1, _read(schema_dir / f"upgrade_v{version}_to_v{version + 1}.sql"))
        for version in range(current, target)
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"missing schema file {path}") from None
    except OSError as e:
        raise SchemaError(f"cannot read schema file {path}: {e.strerror}") from None
