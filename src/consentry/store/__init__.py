"""Where consentry keeps what it learns. SQLite is the embedded default; PostgreSQL by URL."""

from consentry.store.store import Store, StoredFile, default_db_path

__all__ = ["Store", "StoredFile", "default_db_path"]
