"""The audit log: every change, who made it, and what it touched.

An event is written in the same transaction as the change it describes, so
the log never claims a change that was rolled back. Details hold names and
digests, never secret values or tokens.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from gitops.models import AuditEvent, utcnow
from gitops.policy import Principal, Scope


_INSERT = insert(AuditEvent.__table__)


def record(session: Session, principal: Principal, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    actor = principal.name if principal.token_id is None else f"{principal.name} (token {principal.token_id})"
    # a Core INSERT, run now in the caller's transaction: no ORM object to flush later
    session.execute(_INSERT, {"tenant_id": principal.tenant_id, "actor": actor, "action": action, "target": target,
                              "detail": detail or {}, "at": utcnow()})


def list_events(session: Session, principal: Principal, *, limit: int = 100, before_id: int | None = None) -> list[AuditEvent]:
    principal.require("audit.read", Scope(principal.tenant_id), "the tenant")
    query = select(AuditEvent).where(AuditEvent.tenant_id == principal.tenant_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


__all__ = ["record", "list_events"]
