"""``python -m server.storage init``: create the tables and load the business profiles.

The server does the same on start; this command is for a database prepared ahead (a new Postgres,
a deploy step). Reads DATABASE_URL and BUSINESSES_FILE like the server (``.env`` included).
"""
from __future__ import annotations

import argparse
import os
import sys

from dotenv import load_dotenv

from server.business.profiles import DEFAULT_FILE, ProfileError, load_profiles
from server.storage.db import DEFAULT_URL, Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.storage", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["init"], help="init: create the schema and load the profiles")
    parser.parse_args(argv)
    load_dotenv()
    url = os.environ.get("DATABASE_URL", "").strip() or DEFAULT_URL
    try:
        profiles = load_profiles(os.environ.get("BUSINESSES_FILE", "").strip() or DEFAULT_FILE)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = Store(url)
    store.create_schema()
    count = store.sync_businesses(profiles)
    print(f"schema ready on {store.engine.url.render_as_string(hide_password=True)}; {count} businesses loaded "
          f"from {profiles.source}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
