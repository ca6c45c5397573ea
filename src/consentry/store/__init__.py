"""Where consentry keeps what it learns. SQLite is the embedded default."""

from consentry.store.sqlite import Store, StoredFile, default_db_path

__all__ = ["Store", "StoredFile", "default_db_path"]
