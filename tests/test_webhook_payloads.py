"""What a status webhook sends (gitops.webhook_payloads): each format's body, and the Standard Webhooks signature.

Pure: events built in memory, no database. The Shipyard body is checked against its JSON Schema,
Slack's and Teams' against the shapes their incoming webhooks take, and the signature against the
Standard Webhooks specification's own test vector.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from gitops import webhook_payloads
from gitops.models import WebhookEvent
from gitops.webhook_events import envelope

SCHEMA = json.loads(Path("schemas/webhook-event.schema.json").read_text())
AT = dt.datetime(2026, 12, 6, 19, 30, tzinfo=dt.timezone.utc)
VERSION = {"tenant": "acme", "cluster": "prod", "workspace": "payments", "app": "ledger", "version": 12,
           "action": "deploy", "deployment_id": "d-1", "commit": "0123456789abcdef0123456789abcdef01234567",
           "changed": True, "source_commit": None, "author": "ana", "origin": None}
DEGRADED = {**VERSION, "sync": "Synced", "health": "Degraded", "operation": "Succeeded",
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "message": "Deployment ledger: <!channel> 0/3 ready & <https://evil.example|click>"}
RUN = {"tenant": "acme", "cluster": "prod", "workspace": "payments", "app": "nightly", "run": 7, "state": "failed",
       "message": "BackoffLimitExceeded", "workflow": None, "started_by": "ana", "created_at": AT.isoformat(),
       "finished_at": AT.isoformat()}
OFFLINE = {"tenant": "acme", "cluster": "prod", "last_seen_at": AT.isoformat(), "offline_after": 600.0}

# The Standard Webhooks specification's test vector (https://github.com/standard-webhooks/standard-webhooks).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_SECRET = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="


def event(type: str, data: dict, key: str = "version/12/degraded/s1.4") -> WebhookEvent:
    return WebhookEvent(tenant_id=1, key=key, type=type, data=data, occurred_at=AT, fanned_out=True)


def sent(format: str, happened: WebhookEvent) -> dict:
    return json.loads(webhook_payloads.body(format, happened))


# --- Shipyard's format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("happened", [event("version.degraded", DEGRADED), event("version.committed", VERSION),
                                      event("run.failed", RUN, "run/7/failed"),
                                      event("cluster.offline", OFFLINE, "cluster/3/offline/x")],
                         ids=lambda happened: happened.type)
def test_the_shipyard_body_is_the_envelope_its_schema_describes(happened):
    body = sent("shipyard", happened)
    assert body == envelope(happened)
    assert body["id"] == happened.key and body["type"] == happened.type and body["version"] == "1"
    Draft202012Validator(SCHEMA, format_checker=FormatChecker()).validate(body)


# --- Slack ---------------------------------------------------------------------------------------------------


def test_a_slack_message_has_a_fallback_text_and_blocks_with_everything_escaped():
    message = sent("slack", event("version.degraded", DEGRADED))
    assert set(message) == {"text", "blocks"}
    assert message["text"] == "payments/ledger on prod: version 12 is degraded"
    headline, fields, context = message["blocks"]
    assert headline["type"] == "section" and headline["text"]["type"] == "mrkdwn"
    # ArgoCD's message may hold what Slack reads as markup: it is shown, never acted on
    assert headline["text"]["text"] == (":red_circle: *payments/ledger on prod: version 12 is degraded*\n"
                                        "Deployment ledger: &lt;!channel&gt; 0/3 ready &amp; "
                                        "&lt;https://evil.example|click&gt;")
    assert "<!channel>" not in json.dumps(message)
    assert fields["type"] == "section"
    assert {"type": "mrkdwn", "text": "*App*\nledger"} in fields["fields"]
    assert {"type": "mrkdwn", "text": "*Commit*\n0123456789ab"} in fields["fields"]
    assert {"type": "mrkdwn", "text": "*Health*\nDegraded"} in fields["fields"]
    assert len(fields["fields"]) <= 10 and all(len(field["text"]) <= 2000 for field in fields["fields"])
    assert context == {"type": "context", "elements": [
        {"type": "mrkdwn", "text": "version.degraded · 2026-12-06T19:30:00.000000+00:00"}]}


def test_slack_section_text_stays_within_slacks_limit():
    long = {**DEGRADED, "message": "x" * 2000, "app": "a" * 63, "workspace": "w" * 63}
    (headline, *_) = sent("slack", event("version.degraded", long))["blocks"]
    assert len(headline["text"]["text"]) <= 3000


def test_each_kind_of_event_reads_as_a_sentence():
    assert webhook_payloads.headline(event("version.healthy", DEGRADED)) == \
        "payments/ledger on prod: version 12 is healthy"
    assert webhook_payloads.headline(event("version.rolled_back", VERSION)) == \
        "payments/ledger on prod: rolled back, as version 12"
    assert webhook_payloads.headline(event("run.failed", RUN)) == "payments/nightly on prod: run 7 failed"
    assert webhook_payloads.headline(event("cluster.offline", OFFLINE)) == "cluster prod: the agent is offline"
    assert webhook_payloads.headline(event("webhook.test", {})) == "a test delivery from Shipyard"
    assert webhook_payloads.headline(event("version.synced", {})) == "?/? on ?: version ? synced"


# --- Microsoft Teams -------------------------------------------------------------------------------------------


def test_a_teams_message_carries_one_adaptive_card_as_workflows_take_it():
    message = sent("teams", event("run.failed", RUN, "run/7/failed"))
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, text, facts, footer = card["body"]
    assert title == {"type": "TextBlock", "text": "payments/nightly on prod: run 7 failed", "weight": "Bolder",
                     "size": "Medium", "color": "Attention", "wrap": True}
    assert text == {"type": "TextBlock", "text": "BackoffLimitExceeded", "wrap": True}
    assert facts["type"] == "FactSet"
    assert {"title": "Run", "value": "7"} in facts["facts"] and {"title": "Started by", "value": "ana"} in facts["facts"]
    assert footer["isSubtle"] is True and footer["text"].startswith("run.failed · ")


def test_good_news_is_green_and_events_without_a_message_have_no_message_block():
    card = sent("teams", event("cluster.online", {"tenant": "acme", "cluster": "prod", "last_seen_at": AT.isoformat(),
                                                  "previously_seen_at": AT.isoformat()}))["attachments"][0]["content"]
    assert card["body"][0]["color"] == "Good"
    assert [block["type"] for block in card["body"]] == ["TextBlock", "FactSet", "TextBlock"]


# --- signatures ----------------------------------------------------------------------------------------


def test_the_signature_is_the_standard_webhooks_one():
    assert webhook_payloads.signature([VECTOR_SECRET], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_during_a_rotation_both_secrets_sign_and_either_verifies():
    now = int(time.time())
    headers = webhook_payloads.headers([OTHER_SECRET, VECTOR_SECRET], "run/7/failed", now, b"{}")
    first, second = headers["webhook-signature"].split(" ")
    assert second == webhook_payloads.signature([VECTOR_SECRET], "run/7/failed", now, b"{}")
    assert first == webhook_payloads.signature([OTHER_SECRET], "run/7/failed", now, b"{}")
    assert headers["webhook-id"] == headers["Idempotency-Key"] == "run/7/failed"
    assert headers["webhook-timestamp"] == str(now) and headers["Content-Type"] == "application/json"
    assert webhook_payloads.verify(VECTOR_SECRET, headers, b"{}")
    assert webhook_payloads.verify(OTHER_SECRET, headers, b"{}")


def test_verify_refuses_what_was_not_signed_now_with_the_secret():
    now = int(time.time())
    good = webhook_payloads.headers([VECTOR_SECRET], "run/7/failed", now, b"{}")
    assert webhook_payloads.verify(VECTOR_SECRET, good, b"{}")
    assert not webhook_payloads.verify(VECTOR_SECRET, good, b'{"tampered": true}')
    assert not webhook_payloads.verify(OTHER_SECRET, good, b"{}")
    stale = webhook_payloads.headers([VECTOR_SECRET], "run/7/failed", now - 301, b"{}")
    assert not webhook_payloads.verify(VECTOR_SECRET, stale, b"{}")
    assert webhook_payloads.verify(VECTOR_SECRET, stale, b"{}", tolerance=400)
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert not webhook_payloads.verify(VECTOR_SECRET, {k: v for k, v in good.items() if k != missing}, b"{}")
    assert not webhook_payloads.verify(VECTOR_SECRET, {**good, "webhook-signature": "v2," + good[
        "webhook-signature"].partition(",")[2]}, b"{}")
