"""Which business answers a called number: the profile, the default one, or a refusal.

The profiles file is loaded at start, into this process and into the database
(``Store.sync_businesses``, which gives each business its row id, kept here too): the database
holds them for the admin pages and every other process, and a call is answered from this
process's own copy, so a database that is down or slow never changes what a caller gets (nor
delays the greeting). Numbers that are not listed get the file's ``[default]`` profile, or, with
``UNKNOWN_NUMBER_POLICY=refuse``, no business at all: the webhook answers with a short message and
hangs up.
"""
from __future__ import annotations

from dataclasses import dataclass

from server.business.profiles import BusinessProfile, Profiles, number_key


@dataclass(frozen=True)
class Answering:
    business_id: int | None
    """None for the default profile (no row of its own)."""
    profile: BusinessProfile


class BusinessDirectory:
    def __init__(self, profiles: Profiles, ids: dict[str, int] | None = None,
                 unknown_number_policy: str = "default") -> None:
        """``ids``: number -> the business's row id (``Store.sync_businesses``)."""
        self.profiles = profiles
        self.ids = dict(ids or {})
        self.refuse_unknown = unknown_number_policy == "refuse"

    def answering(self, to_number: str) -> Answering | None:
        """The business answering ``to_number``; None means: refuse the call."""
        number = number_key(to_number)
        profile = self.profiles.businesses.get(number)
        if profile is not None:
            return Answering(self.ids.get(number), profile)
        return None if self.refuse_unknown else self.default_answering()

    def default_answering(self) -> Answering:
        return Answering(None, self.profiles.default)
