"""The PostgreSQL engine: the same schema files and query functions as SQLite's, through
psycopg 3 in one database thread.

dialect.py is the one place where the SQL differs; engine.py connects, keeps the schema
current and runs grouped transactions (the SQLite engine's, with an advisory lock for
writers); database.py puts the four parts of the Database interface together.
"""

from architect.storage.postgresql.database import PostgreSQLDatabase, open_postgresql_database

__all__ = ["PostgreSQLDatabase", "open_postgresql_database"]
