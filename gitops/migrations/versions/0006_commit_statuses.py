"""commit statuses: which provider a spec repository's statuses go to, and what each sync said there

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('spec_repo', schema=None) as batch_op:
        batch_op.add_column(sa.Column('commit_status', sa.String(length=16), nullable=False, server_default='auto'))
        batch_op.add_column(sa.Column('provider', sa.String(length=16), nullable=True))
    with op.batch_alter_table('spec_sync', schema=None) as batch_op:
        batch_op.add_column(sa.Column('commit_status', sa.JSON(), nullable=True))


def downgrade() -> None:
    # recreate="never": SQLite (3.35+) drops a column in place, as 0004's downgrade does
    with op.batch_alter_table('spec_sync', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('commit_status')
    with op.batch_alter_table('spec_repo', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('provider')
        batch_op.drop_column('commit_status')
