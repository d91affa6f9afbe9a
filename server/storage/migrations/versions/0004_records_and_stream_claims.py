"""calls.recording_error and stream_claims: why a call's recording could not be written (the
caller was told the call is recorded, so its absence must show), and the stream tokens that
opened a media stream, each once (``server/call/stream_tokens.py``).

``recording_error`` is nullable without a default, like 0002 and 0003: older calls keep NULL and
adding it rewrites no row. ``stream_claims`` is a new table: its primary key, the token's nonce, is
what makes a replayed token fail on every instance sharing the database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("recording_error", sa.Text(), nullable=True))
    op.create_table(
        "stream_claims",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("call_sid", sa.String(64), nullable=False, index=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stream_claims")
    op.drop_column("calls", "recording_error")
