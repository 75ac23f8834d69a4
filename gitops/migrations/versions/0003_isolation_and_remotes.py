"""isolation and remotes: sealed remote credentials, allowed remote hosts, secret path allow-lists, host claims

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 05:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remote_allowed_hosts', sa.JSON(), nullable=False, server_default='[]'))
    with op.batch_alter_table('cluster', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remote_credentials', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('remote_auth', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('secret_paths', sa.JSON(), nullable=False, server_default='[]'))
    with op.batch_alter_table('workspace', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secret_paths', sa.JSON(), nullable=False, server_default='[]'))
    op.create_table('host_claim',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=253), nullable=False),
    sa.Column('claimed_by', sa.String(length=255), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['cluster.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cluster_id', 'host')
    )
    with op.batch_alter_table('host_claim', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_claim_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('host_claim', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_host_claim_workspace_id'))
    op.drop_table('host_claim')
    with op.batch_alter_table('workspace', schema=None) as batch_op:
        batch_op.drop_column('secret_paths')
    with op.batch_alter_table('cluster', schema=None) as batch_op:
        batch_op.drop_column('secret_paths')
        batch_op.drop_column('remote_auth')
        batch_op.drop_column('remote_credentials')
    with op.batch_alter_table('tenant', schema=None) as batch_op:
        batch_op.drop_column('remote_allowed_hosts')
