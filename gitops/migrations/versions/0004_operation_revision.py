"""operation revision: the revision ArgoCD's last sync operation synced, apart from the one it compares

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_status', schema=None) as batch_op:
        batch_op.add_column(sa.Column('operation_revision', sa.String(length=64), nullable=True))


def downgrade() -> None:
    # recreate="never": SQLite (3.35+) drops a column in place, as 0003's downgrade does
    with op.batch_alter_table('app_status', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('operation_revision')
