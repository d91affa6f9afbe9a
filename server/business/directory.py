"""Which business answers a called number: the stored profile, the default one, or a refusal.

The profiles file is loaded into the database at start (``Store.sync_businesses``); every call
then reads its business from the database, so another process (an admin tool, a second
instance) sees the same profiles. Numbers that are not listed get the file's ``[default]`` profile,
or, with ``UNKNOWN_NUMBER_POLICY=refuse``, no business at all: the webhook answers with a short
message and hangs up.
"""
from __future__ import annotations

from dataclasses import dataclass

from server.business.profiles import BusinessProfile, Profiles
from server.leads.normalise import normalise_phone
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
        e164 = normalise_phone(to_number).value or to_number.strip()
        found = self.store.business_for(e164)
        if found is not None:
            return Answering(*found)
        return None if self.refuse_unknown else Answering(None, self.profiles.default)
