"""calls.timeline_json: the call's timeline (spans and events per lane), written at the call's end.

Nullable and without a default, so the previous release's calls keep NULL (they have no
timeline) and adding it rewrites no row. In a batch for SQLite's sake, where a plain ADD COLUMN
still runs in place (no table copy).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("timeline_json", sa.Text(), nullable=True))


def downgrade() -> None:
    # A plain column drops in place (SQLite 3.35+ has DROP COLUMN); a batch would copy calls, and
    # with foreign keys on, dropping the old copy fails as soon as a lead refers to a call.
    op.drop_column("calls", "timeline_json")
