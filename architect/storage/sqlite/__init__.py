"""The embedded database: one SQLite file in the data folder, reached through adbapi.

engine.py opens the file, keeps its schema current and runs each query function
as one transaction in the database thread. The query functions live with their
part of the Database interface: runs.py (task runs, assignments, units),
workers.py (workers, qualifications), agents.py (agents, statuses, resume and
recovery) with work.py (a registration's checks and reservation in one
transaction), submissions.py (submissions, files, live updates), run_record.py
(settings changed at run time, connection events). database.py puts the five
parts together as SQLiteDatabase.

The SQL is plain and portable. Placeholders are "?" (sqlite3's qmark
paramstyle); a PostgreSQL backend through psycopg would use "%s" (format
paramstyle) in the same places, and "INSERT ... RETURNING id" where this code
reads cursor.lastrowid. The query functions take a cursor and plain values, so
such a backend can reuse their shape.
"""

from architect.storage.sqlite.database import SQLiteDatabase, open_database, open_sqlite_database
from architect.storage.sqlite.engine import DEFAULT_DATABASE
from architect.storage.sqlite.runs import available_units_sql

__all__ = [
    "DEFAULT_DATABASE",
    "SQLiteDatabase",
    "available_units_sql",
    "open_database",
    "open_sqlite_database",
]
