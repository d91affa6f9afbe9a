"""Fixtures shared by the storage tests: the repo's business profiles in a fresh SQLite store."""
import pytest

from server.business.profiles import Profiles, load_profiles
from server.storage.db import Store


@pytest.fixture()
def profiles() -> Profiles:
    return load_profiles()


@pytest.fixture()
def store(tmp_path, profiles):
    s = Store(f"sqlite:///{tmp_path}/x.sqlite3")
    s.create_schema()
    s.sync_businesses(profiles)
    yield s
    s.close()
