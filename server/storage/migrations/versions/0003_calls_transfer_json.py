"""calls.transfer_json, calls.recording_path and calls.summary: a call handed to a person (why, to
whom masked, answered or not), the file of its recording (businesses that opted in), and the
owner's summary of the call.

Nullable without a default, like 0002: older calls keep NULL (never transferred) and adding it
rewrites no row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("transfer_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("recording_path", sa.String(300), nullable=True))
        batch.add_column(sa.Column("summary", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("calls", "summary")
    op.drop_column("calls", "recording_path")
    op.drop_column("calls", "transfer_json")
