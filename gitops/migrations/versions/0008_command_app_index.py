"""commit refreshes: commands looked up by app and the time their result came

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 22:45:00.000000
"""

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_command_app', 'command', ['application_id', 'done_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_command_app', table_name='command')
