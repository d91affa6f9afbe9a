"""Which business answers a called number: the stored profile, the default one, or a refusal.

The profiles file is loaded into the database at start (``Store.sync_businesses``); every call
then reads its business from the database, so another process (an admin tool, a second
instance) sees the same profiles. Numbers that are not listed get the file's ``[default]`` profile,
or, with ``UNKNOWN_NUMBER_POLICY=refuse``, no business at all: the webhook answers with a short
message and hangs up.
"""
from __future__ import annotations

from dataclasses import dataclass

from server.business.profiles import BusinessProfile, Profiles, number_key
from server.storage.db import Store


@dataclass(frozen=True)
class Answering:
    business_id: int | None
    """None for the default profile (no row of its own)."""
    profile: BusinessProfile


class BusinessDirectory:
    def __init__(self, store: Store, profiles: Profiles, unknown_number_policy: str = "default") -> None:
        self.store = store
        self.profiles = profiles
        self.refuse_unknown = unknown_number_policy == "refuse"

    def answering(self, to_number: str) -> Answering | None:
        """The business answering ``to_number``; None means: refuse the call."""
        found = self.store.business_for(number_key(to_number))
        if found is not None:
            return Answering(*found)
        return None if self.refuse_unknown else self.default_answering()

    def default_answering(self) -> Answering:
        return Answering(None, self.profiles.default)
