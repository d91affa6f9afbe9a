"""Schema migrations of the store (Alembic), run by the store itself.

``versions/`` holds the revisions: ``0001`` is the previous release's schema exactly as its
``create_all`` made it, ``0002`` adds ``calls.timeline_json``. ``plan.py`` decides what a
database needs (create, adopt the previous release's unversioned schema, upgrade, nothing, or
refuse a newer one); ``runner.py`` does it in one locked transaction. ``Store.create_schema``
and ``python -m server.storage upgrade`` call ``upgrade_to_head``; the server's start calls
``upgrade_on_start`` (``Store.upgrade_on_start``), which ends a start it cannot serve in one line.

A new revision: ``versions/NNNN_what.py`` with ``down_revision`` the previous head, written by
hand or from Alembic's autogenerate (``alembic_config`` + ``command.revision(..., autogenerate=
True)`` on a database at head); then ``tests/test_migrations.py`` checks that the revisions
replayed give exactly the models' schema.
"""
from server.storage.migrations.plan import SchemaError
from server.storage.migrations.runner import (UpgradeResult, head_revision, plan_for, upgrade_on_start,
                                              upgrade_to_head)

__all__ = ["SchemaError", "UpgradeResult", "head_revision", "plan_for", "upgrade_on_start", "upgrade_to_head"]
