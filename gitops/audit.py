"""The audit log: every change, who made it, and what it touched.

An event is written in the same transaction as the change it describes, so
the log never claims a change that was rolled back, and by the service that
makes the change (gitops.service_context), never by a view or a command.
Details hold names and digests, never secret values or tokens.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from gitops.models import AuditEvent, utcnow
from gitops.policy import Principal, Scope
from gitops.service_context import Context


_INSERT = insert(AuditEvent.__table__)


def record(session: Session, actor: Principal, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Write that ``actor`` did ``action`` to ``target``; called by the service that makes the change (no check)."""
    shown = actor.name if actor.token_id is None else f"{actor.name} (token {actor.token_id})"
    # a Core INSERT, run now in the caller's transaction: no ORM object to flush later
    session.execute(_INSERT, {"tenant_id": actor.tenant_id, "actor": shown, "action": action, "target": target,
                              "detail": detail or {}, "at": utcnow()})


def list_events(ctx: Context, *, limit: int = 100, before_id: int | None = None, actor: str | None = None,
                action: str | None = None, target: str | None = None, since: dt.datetime | None = None,
                until: dt.datetime | None = None) -> list[AuditEvent]:
    """The tenant's events, newest first: ``limit`` of them, older than event ``before_id`` (keyset pages).

    Each filter is optional: ``actor`` names a person, whose events count whether they were logged
    in or used one of their API tokens; ``action`` is a prefix ("cluster." or "app.deploy");
    ``target`` is part of the target, in any case; ``since`` and ``until`` bound the moment
    (from ``since``, before ``until``).
    """
    principal = ctx.principal
    principal.require("audit.read", Scope(principal.tenant_id), "the tenant")
    query = select(AuditEvent).where(AuditEvent.tenant_id == principal.tenant_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if actor:
        query = query.where(or_(AuditEvent.actor == actor,
                                AuditEvent.actor.startswith(f"{actor} (token ", autoescape=True)))
    if action:
        query = query.where(AuditEvent.action.startswith(action.lower(), autoescape=True))
    if target:
        query = query.where(func.lower(AuditEvent.target).contains(target.lower(), autoescape=True))
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    return list(ctx.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


__all__ = ["record", "list_events"]
