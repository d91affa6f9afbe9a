"""calls.usage_json and calls.cost_usd: the model's tokens of the call by kind, and what the call
cost (model, transcription, the phone line; ``server/business/pricing.py``).

Nullable without defaults, like 0002 to 0005: older calls keep NULL (not counted then).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("usage_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("cost_usd", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("calls", "cost_usd")
    op.drop_column("calls", "usage_json")
