"""What a status webhook sends: an event's body in the subscription's format, and the signature over it.

Pure functions: an event (``WebhookEvent``) and the subscription's secrets in, bytes and headers
out; the delivery worker (gitops.webhook_delivery) sends them.

=========  =========================================================================================
format     body
=========  =========================================================================================
shipyard   the event's envelope, ``{"type", "id", "occurred_at", "version", "data"}``
           (gitops.webhook_events.envelope, schemas/webhook-event.schema.json)
slack      a Slack incoming webhook's message: ``text`` (what notifications show) and ``blocks``: a
           section with the headline and ArgoCD's or the run's message, a section of fields (at most
           10), a context line with the event's type and time. ``&``, ``<`` and ``>`` are escaped as
           Slack's mrkdwn asks, so no value can mention a channel or forge a link.
           https://api.slack.com/messaging/webhooks, https://api.slack.com/reference/block-kit/blocks
teams      what a Teams workflow's "When a Teams webhook request is received" trigger posts as it is:
           ``{"type": "message", "attachments": [one Adaptive Card]}``, the card a headline, the
           message, a FactSet and the type and time. Workflows take Adaptive Cards only (the Office 365
           connectors' MessageCard is retired); version 1.2, which every Teams client renders.
           https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
=========  =========================================================================================

Every body is signed as Standard Webhooks (https://www.standardwebhooks.com/) says:

=====================  ===========================================================================
header                 value
=====================  ===========================================================================
webhook-id             the event's key: the same on every attempt and redelivery
webhook-timestamp      when the attempt was signed, Unix seconds
webhook-signature      ``v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, the key being the
                       base64-decoded part of the ``whsec_...`` secret; during a rotation's overlap one
                       for each secret, space-separated
Idempotency-Key        the event's key again, for receivers that dedupe by that header
=====================  ===========================================================================

:func:`verify` is how a receiver checks it, standard library only: the README shows it as it is
here, and the tests' receivers run the README's copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from gitops.models import WebhookEvent
from gitops.webhook_events import envelope

USER_AGENT = "Shipyard"
SLACK_SECTION_LIMIT = 3000  # characters of a section block's text
SLACK_FIELD_LIMIT = 2000  # ... of one of its fields
SLACK_FIELDS = 10  # fields one section holds
CARD_VERSION = "1.2"

_HEADLINES = {
    "version.committed": "{subject}: version {version} committed",
    "version.synced": "{subject}: version {version} synced",
    "version.healthy": "{subject}: version {version} is healthy",
    "version.degraded": "{subject}: version {version} is degraded",
    "version.sync_failed": "{subject}: version {version} failed to sync",
    "version.rolled_back": "{subject}: rolled back, as version {version}",
    "version.promoted": "{subject}: version {version} promoted",
    "run.succeeded": "{subject}: run {run} succeeded",
    "run.failed": "{subject}: run {run} failed",
    "cluster.offline": "cluster {cluster}: the agent is offline",
    "cluster.online": "cluster {cluster}: the agent is back online",
    "webhook.test": "a test delivery from Shipyard",
}
_GOOD = ("version.synced", "version.healthy", "run.succeeded", "cluster.online")
_BAD = ("version.degraded", "version.sync_failed", "run.failed", "cluster.offline")
_SLACK_MARKS = {"good": ":large_green_circle:", "bad": ":red_circle:", "news": ":large_blue_circle:"}
_CARD_COLORS = {"good": "Good", "bad": "Attention", "news": "Accent"}
# The facts a message shows, in this order, when the event has them: (label, data key, characters kept).
_FACTS = (("Cluster", "cluster", None), ("Workspace", "workspace", None), ("App", "app", None),
          ("Version", "version", None), ("Commit", "commit", 12), ("Revision", "revision", 12),
          ("Sync", "sync", None), ("Health", "health", None), ("Run", "run", None), ("Workflow", "workflow", None),
          ("Author", "author", None), ("Started by", "started_by", None), ("Last seen", "last_seen_at", None))


# --- bodies ----------------------------------------------------------------------------------------


def body(format: str, event: WebhookEvent) -> bytes:
    """The bytes a subscription of ``format`` (gitops.webhooks.FORMATS) is sent for ``event``."""
    message = {"shipyard": envelope, "slack": slack_message, "teams": teams_message}[format](event)
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def headline(event: WebhookEvent) -> str:
    """One line saying what happened: ``payments/ledger on prod: version 12 is degraded``."""
    data = event.data or {}
    values = {name: _text(value) for name, value in data.items()}
    values["subject"] = f"{_text(data.get('workspace'))}/{_text(data.get('app'))} on {_text(data.get('cluster'))}"
    return _HEADLINES.get(event.type, event.type).format_map(_Missing(values))


def facts(event: WebhookEvent) -> list[tuple[str, str]]:
    """The event's facts a person reads, as (label, value), in a fixed order; at most SLACK_FIELDS."""
    data = event.data or {}
    shown = [(label, _text(data[key])[:keep] if keep else _text(data[key]))
             for label, key, keep in _FACTS if data.get(key) not in (None, "")]
    return shown[:SLACK_FIELDS]


def slack_message(event: WebhookEvent) -> dict[str, Any]:
    """A Slack incoming webhook's message for ``event`` (the module's docstring)."""
    title = _slack_escaped(headline(event))
    text = f"{_SLACK_MARKS[_tone(event)]} *{title}*"
    if (event.data or {}).get("message"):
        text += "\n" + _slack_escaped(_text(event.data["message"]))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn",
                                                                 "text": _fit(text, SLACK_SECTION_LIMIT)}}]
    fields = [{"type": "mrkdwn", "text": _fit(f"*{label}*\n{_slack_escaped(value)}", SLACK_FIELD_LIMIT)}
              for label, value in facts(event)]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escaped(_footer(event))}]})
    return {"text": title, "blocks": blocks}


def teams_message(event: WebhookEvent) -> dict[str, Any]:
    """The message a Teams workflow's webhook trigger posts, with one Adaptive Card (the module's docstring)."""
    card_body: list[dict[str, Any]] = [{"type": "TextBlock", "text": headline(event), "weight": "Bolder",
                                        "size": "Medium", "color": _CARD_COLORS[_tone(event)], "wrap": True}]
    if (event.data or {}).get("message"):
        card_body.append({"type": "TextBlock", "text": _text(event.data["message"]), "wrap": True})
    shown = facts(event)
    if shown:
        card_body.append({"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in shown]})
    card_body.append({"type": "TextBlock", "text": _footer(event), "isSubtle": True, "size": "Small", "wrap": True})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": CARD_VERSION, "body": card_body}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


class _Missing(dict):
    """Format values where a key the event lacks reads as ``?``."""

    def __missing__(self, key: str) -> str:
        return "?"


def _tone(event: WebhookEvent) -> str:
    return "good" if event.type in _GOOD else "bad" if event.type in _BAD else "news"


def _footer(event: WebhookEvent) -> str:
    return f"{event.type} · {envelope(event)['occurred_at']}"


def _text(value: Any) -> str:
    return "?" if value is None else str(value)


def _slack_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- signatures ------------------------------------------------------------------------------------


def signature(secrets: list[str], webhook_id: str, timestamp: int, content: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, space-separated."""
    signed = f"{webhook_id}.{timestamp}.".encode() + content
    return " ".join("v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
                    for secret in secrets)


def headers(secrets: list[str], webhook_id: str, timestamp: int, content: bytes) -> dict[str, str]:
    """Every header of a delivery of ``content`` signed with ``secrets`` at ``timestamp`` (Unix seconds)."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp), "webhook-signature": signature(secrets, webhook_id, timestamp, content),
            "Idempotency-Key": webhook_id}


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """Whether a delivery was signed with ``secret`` ("whsec_..."); ``headers`` as the web framework gives
    them (looked up without regard to case), ``body`` the raw bytes received."""
    webhook_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not webhook_id or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = [given.partition(",") for given in headers.get("webhook-signature", "").split()]
    return any(version == "v1" and hmac.compare_digest(signature, expected) for version, _, signature in signatures)


__all__ = ["USER_AGENT", "body", "headline", "facts", "slack_message", "teams_message", "signature", "headers",
           "verify"]
