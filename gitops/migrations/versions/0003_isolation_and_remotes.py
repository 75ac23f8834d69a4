"""isolation and remotes: sealed remote credentials, allowed remote hosts, secret path allow-lists, host claims

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 05:00:00.000000
"""

import datetime as dt
import json

import sqlalchemy as sa
import yaml
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
    _claim_routed_hosts()


def _claim_routed_hosts() -> None:
    """Hosts the apps route today are claimed by their workspaces, the oldest deploy first.

    Without this, the first deploy after the upgrade would claim a host that another
    workspace already serves. The hosts come from each live app's current version: an
    exposed port's host, or the one the renderer derives (``<app>-<workspace>.<base_domain>``).
    """
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        "SELECT c.id, c.profile_text, w.id, w.name, a.name, v.spec, v.created_at "
        "FROM application a JOIN workspace w ON w.id = a.workspace_id JOIN cluster c ON c.id = w.cluster_id "
        "JOIN version v ON v.application_id = a.id AND v.number = a.current_version "
        "WHERE a.deleted = :no AND v.spec IS NOT NULL ORDER BY v.created_at, v.id"), {"no": False}).all()
    base_domains: dict[int, str | None] = {}
    claimed: set[tuple[int, str]] = set()
    now = dt.datetime.now(dt.timezone.utc)
    for cluster_id, profile_text, workspace_id, workspace, app, spec, _ in rows:
        if cluster_id not in base_domains:
            try:
                profile = yaml.safe_load(profile_text)
            except yaml.YAMLError:
                profile = None
            domain = profile.get("base_domain") if isinstance(profile, dict) else None
            base_domains[cluster_id] = domain if isinstance(domain, str) else None
        if isinstance(spec, str):
            spec = json.loads(spec)
        ports = spec.get("ports") if isinstance(spec, dict) else None
        for port in ports if isinstance(ports, list) else []:
            if not isinstance(port, dict) or not port.get("expose"):
                continue
            host = port.get("host")
            if not host and base_domains[cluster_id]:
                host = f"{app}-{workspace}.{base_domains[cluster_id]}"
            if not isinstance(host, str) or not host or (cluster_id, host.lower()) in claimed:
                continue
            claimed.add((cluster_id, host.lower()))
            connection.execute(sa.text(
                "INSERT INTO host_claim (cluster_id, workspace_id, host, claimed_by, claimed_at) "
                "VALUES (:cluster, :workspace, :host, :by, :at)"),
                {"cluster": cluster_id, "workspace": workspace_id, "host": host.lower(),
                 "by": f"{workspace}/{app}", "at": now})


def downgrade() -> None:
    # recreate="never": SQLite (3.35+) drops a column in place. Recreating the table would drop
    # the old one, and with foreign keys on, its ON DELETE CASCADE would empty every child table.
    with op.batch_alter_table('host_claim', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_host_claim_workspace_id'))
    op.drop_table('host_claim')
    with op.batch_alter_table('workspace', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('secret_paths')
    with op.batch_alter_table('cluster', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('secret_paths')
        batch_op.drop_column('remote_auth')
        batch_op.drop_column('remote_credentials')
    with op.batch_alter_table('tenant', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('remote_allowed_hosts')
