"""Shared fixtures. Tests never touch the network; every model file is built by the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A path a malicious payload would create if it ever ran. Tests assert it does not exist."""
    path = tmp_path / "CANARY_PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a payload ran: the canary file was created"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the default database and any config out of the real home directory."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.delenv("CONSENTRY_DB", raising=False)
