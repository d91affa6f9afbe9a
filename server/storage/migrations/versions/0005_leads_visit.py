"""leads.visit_json: the visit booked for the lead (its start, how it was said, booked or the
calendar unavailable), from the booking tools (``server/tools/book_visit.py``).

Nullable and without a default, like 0002 to 0004: older leads keep NULL (no visit) and adding it
rewrites no row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("visit_json", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("leads", "visit_json")
