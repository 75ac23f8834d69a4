"""Push webhooks of every provider through ``POST /hooks/<tenant>/<repository>``, end to end.

A spec is committed and pushed to a real git repository (tests/gitserver.py, https on
loopback); the delivery is that provider's fixture payload (fixtures/webhooks/) with the
pushed commit ids and the ref substituted in, signed the way the provider signs, with the
headers a real delivery carries; the spec repositories' worker then runs what the route
queued. One table (``SENDERS``) says how each provider points a payload at a ref and signs
it; every test runs over all of it:

=========================================  ==========================================
delivery                                   answer, and what follows
=========================================  ==========================================
a push to the tracked branch               202; the worker deploys the spec, its
                                           version tagged ``specs@<commit>``
the same delivery id again                 200; one sync, one version
a wrong signature, none, another secret    401; nothing queued
a good signature over a body not JSON      400, saying so; nothing queued
a push to another branch, a tag pushed,    200; nothing queued
a ping, a test or another event
the tracked branch deleted                 no version, no app deleted, no 500; the
                                           sync it asks for says the branch is gone
a body over MAX_CONTENT_LENGTH             413 over the test client and over HTTP on
                                           loopback, with Content-Length or chunked
=========================================  ==========================================

The payloads name the providers' own repository URLs, none of them the test repository's,
so an answer may carry a ``warning`` about it; only the status and what was queued and
deployed are asserted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gitserver import git, git_server  # noqa: F401 - git_server: a fixture
from tests.plane import served, service_spec  # noqa: F401 - served: a fixture
from tests.test_spec_repos import bind, hook, push, register, syncs, versions_of
from tests.test_spec_repos import plane_app, world  # noqa: F401 - fixtures

WEBHOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
# the commit ids the fixtures use throughout (fixtures/webhooks/README.md), replaced by the test's own
FIXTURE_BEFORE = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
FIXTURE_AFTER = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98"
ZEROS = "0" * 40  # "no commit": the ref was created (before) or deleted (after)
TRACKED = "refs/heads/main"
SIGNATURE_HEADERS = ("X-Hub-Signature-256", "X-Hub-Signature", "X-Gitlab-Token", "X-Gitea-Signature",
                     "X-Gogs-Signature", "X-Forgejo-Signature")


# --- how each provider points a push payload at a ref ----------------------------------------------------------

def short_ref(ref: str) -> tuple[str, str]:
    """("tag", name) for refs/tags/<name>, ("branch", name) for refs/heads/<name>."""
    if ref.startswith("refs/tags/"):
        return "tag", ref.removeprefix("refs/tags/")
    return "branch", ref.removeprefix("refs/heads/")


def point_github(payload: dict, ref: str, created: bool, deleted: bool) -> None:
    payload.update(ref=ref, created=created, deleted=deleted)


def point_gitea(payload: dict, ref: str, created: bool, deleted: bool) -> None:
    payload["ref"] = ref  # Gitea and Forgejo send no created/deleted flags


def point_gitlab(payload: dict, ref: str, created: bool, deleted: bool) -> None:
    kind = "tag_push" if short_ref(ref)[0] == "tag" else "push"
    payload.update(ref=ref, object_kind=kind, event_name=kind)
    if deleted:
        payload["checkout_sha"] = None


def point_bitbucket_cloud(payload: dict, ref: str, created: bool, deleted: bool) -> None:
    """The first change moves ``ref``; the fixture's second (a release branch created) stays as it is."""
    kind, name = short_ref(ref)
    change = payload["push"]["changes"][0]
    for side in ("old", "new"):
        change[side].update(type=kind, name=name)
    change.update(created=created, closed=deleted)
    if created:
        change["old"] = None
    if deleted:
        change["new"] = None


def point_bitbucket_server(payload: dict, ref: str, created: bool, deleted: bool) -> None:
    kind, name = short_ref(ref)
    payload["changes"][0].update(ref={"id": ref, "displayId": name, "type": kind.upper()}, refId=ref,
                                 type="ADD" if created else "DELETE" if deleted else "UPDATE")


# --- how each provider signs and names a delivery ---------------------------------------------------------------

def hex_hmac(secret: str, body: bytes, digest=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def github_headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": "488201337",
            "X-Hub-Signature": "sha1=" + hex_hmac(secret, body, hashlib.sha1),
            "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body),
            "User-Agent": "GitHub-Hookshot/8e03811", "Content-Type": "application/json"}


def gitlab_headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": secret, "Idempotency-Key": delivery,
            "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Webhook-UUID": "4ad8b0ab-79a5-4589-beb7-ba06a64848f4",
            "X-Gitlab-Instance": "https://gitlab.acme.example", "User-Agent": "GitLab/17.9.0",
            "Content-Type": "application/json"}


def gitea_headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    """Gitea's own headers, and the same values under Gogs' and GitHub's names, as Gitea sends them."""
    signature = hex_hmac(secret, body)
    return {"X-Gitea-Event": event, "X-Gitea-Event-Type": event, "X-Gitea-Delivery": delivery,
            "X-Gitea-Signature": signature,
            "X-Gogs-Event": event, "X-Gogs-Delivery": delivery, "X-Gogs-Signature": signature,
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature": "sha1=" + hex_hmac(secret, body, hashlib.sha1),
            "X-Hub-Signature-256": "sha256=" + signature, "Content-Type": "application/json"}


def forgejo_headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    return {**gitea_headers(body, secret, delivery, event), "X-Forgejo-Event": event,
            "X-Forgejo-Event-Type": event, "X-Forgejo-Delivery": delivery,
            "X-Forgejo-Signature": hex_hmac(secret, body)}


def bitbucket_cloud_headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    return {"X-Event-Key": event, "X-Hook-UUID": "380d119c-6f4f-434d-b7b2-dc5459e8e589",
            "X-Request-UUID": delivery, "X-Attempt-Number": "1",
            "X-Hub-Signature": "sha256=" + hex_hmac(secret, body),
            "User-Agent": "Bitbucket-Webhooks/2.0", "Content-Type": "application/json"}


def bitbucket_server_headers(body: bytes, secret: str, delivery: str, event: str) -> dict[str, str]:
    return {"X-Event-Key": event, "X-Request-Id": delivery,
            "X-Hub-Signature": "sha256=" + hex_hmac(secret, body),
            "Content-Type": "application/json; charset=utf-8"}


@dataclass(frozen=True)
class Sender:
    """One provider: its push fixture, how it points that payload at a ref, how it signs a delivery,
    the event names of a branch push and a tag push, and events that carry no push (each with its
    own fixture, or None for the push's body, which such an event must not deploy either)."""

    fixture: str
    point: Callable[[dict, str, bool, bool], None]
    headers: Callable[[bytes, str, str, str], dict[str, str]]
    push_event: str
    tag_event: str
    other_events: tuple[tuple[str, str | None], ...]


SENDERS = {
    "github": Sender("github-push.json", point_github, github_headers, "push", "push",
                     (("ping", "github-ping.json"),)),
    "gitlab": Sender("gitlab-push.json", point_gitlab, gitlab_headers, "Push Hook", "Tag Push Hook",
                     (("Merge Request Hook", None), ("System Hook", None))),
    "gitea": Sender("gitea-push.json", point_gitea, gitea_headers, "push", "push", (("create", None),)),
    "forgejo": Sender("gitea-push.json", point_gitea, forgejo_headers, "push", "push", (("create", None),)),
    "bitbucket-cloud": Sender("bitbucket-cloud-push.json", point_bitbucket_cloud, bitbucket_cloud_headers,
                              "repo:push", "repo:push", (("pullrequest:created", None),)),
    "bitbucket-server": Sender("bitbucket-server-push.json", point_bitbucket_server, bitbucket_server_headers,
                               "repo:refs_changed", "repo:refs_changed",
                               (("diagnostics:ping", "bitbucket-server-ping.json"),)),
}


def push_body(sender: Sender, ref: str, before: str | None, after: str | None) -> bytes:
    """The fixture's push with the fixture's commit ids replaced wherever they appear, pointed at ``ref``;
    None for ``before`` creates the ref, for ``after`` deletes it."""
    text = (WEBHOOKS / sender.fixture).read_text()
    payload = json.loads(text.replace(FIXTURE_BEFORE, before or ZEROS).replace(FIXTURE_AFTER, after or ZEROS))
    sender.point(payload, ref, before is None, after is None)
    return json.dumps(payload).encode()


def signed(sender: Sender, body: bytes, secret: str, event: str | None = None,
           delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    return body, sender.headers(body, secret, delivery or str(uuid.uuid4()), event or sender.push_event)


# --- the scene ----------------------------------------------------------------------------------------------------

@pytest.fixture(params=SENDERS)
def sender(request) -> Sender:
    return SENDERS[request.param]


@pytest.fixture
def tracked(world) -> dict:  # noqa: F811
    """The world of tests/test_spec_repos.py with a first commit on main, the repository registered and
    bound to storefront; its ``secret`` and ``base`` commit added."""
    base = push(world["work"], {"README.md": "deploy specs\n"}, "start")
    secret = register(world).webhook_secret
    bind(world)
    return {**world, "secret": secret, "base": base}


def worker_pass(app) -> int:
    return app.extensions["shipyard"].spec_worker.run_once()


def answered(response, status: int) -> dict:
    """The JSON of a hook's answer, which must be of ``status``."""
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def deploys_web(tracked: dict) -> str:
    return push(tracked["work"], {"deploy/web.yaml": service_spec("web")}, "web")


def delete_tracked_branch(tracked: dict, git_server) -> None:  # noqa: F811
    """Delete main at the server, as at a provider: another branch made the default first, since git
    refuses to delete the branch HEAD names."""
    git(tracked["work"], "push", "-q", "origin", "HEAD:refs/heads/next")
    git_server.git("specs.git", "symbolic-ref", "HEAD", "refs/heads/next")
    git(tracked["work"], "push", "-q", "origin", "--delete", "main")


# --- a push deploys, once ----------------------------------------------------------------------------------------

def test_a_signed_push_is_deployed_once_however_often_it_is_delivered(sender, tracked, served):  # noqa: F811
    app = tracked["app"]
    commit = deploys_web(tracked)
    delivery = str(uuid.uuid4())
    body, headers = signed(sender, push_body(sender, TRACKED, tracked["base"], commit), tracked["secret"],
                           delivery=delivery)
    url = f"{served}/hooks/{app.config['TENANT']}/specs"

    first = httpx.post(url, content=body, headers=headers)  # over HTTP on loopback, as a provider sends it
    assert first.status_code == 202, first.text
    assert set(first.json()) - {"warning"} == {"accepted", "sync"} and first.json()["accepted"] is True
    redelivered = httpx.post(url, content=body, headers=headers)
    assert redelivered.status_code == 200 and redelivered.json()["accepted"] is False, redelivered.text

    assert worker_pass(app) == 1
    assert [(s.id, s.trigger, s.delivery, s.new, s.state) for s in syncs(app)] == [
        (first.json()["sync"], "webhook", delivery, commit, "deployed")]
    (version,) = versions_of(tracked, "web")
    assert (version["source"], version["source_commit"]) == ("spec-repo", f"specs@{commit}")

    again = httpx.post(url, content=body, headers=headers)  # a redelivery after the sync ran
    assert again.status_code == 200 and again.json()["accepted"] is False
    assert worker_pass(app) == 0 and len(syncs(app)) == 1 and len(versions_of(tracked, "web")) == 1


# --- refused ------------------------------------------------------------------------------------------------------

def test_a_delivery_without_the_right_signature_or_with_no_json_is_refused_and_queues_nothing(sender, tracked):
    app, secret = tracked["app"], tracked["secret"]
    body = push_body(sender, TRACKED, tracked["base"], deploys_web(tracked))
    _, wrong = signed(sender, body, "someone-elses-secret-0123456789abcdef")
    _, good = signed(sender, body, secret)
    unsigned = {name: value for name, value in good.items() if name not in SIGNATURE_HEADERS}

    for headers in (wrong, unsigned):
        response = hook(app, body, headers)
        error = answered(response, 401)["error"]
        assert error["message"] == "webhook signature missing or not valid"
        assert secret not in response.get_data(as_text=True)

    not_json = b"ref=refs/heads/main&after=" + ZEROS.encode()  # form-encoded, signed with the right secret
    error = answered(hook(app, *signed(sender, not_json, secret)), 400)["error"]
    assert (error["code"], error["message"]) == ("invalid_request", "the webhook body is not JSON")
    assert syncs(app) == [] and versions_of(tracked, "web") == []


# --- answered, nothing to do -------------------------------------------------------------------------------------

def test_pushes_to_other_refs_pings_and_other_events_queue_nothing(sender, tracked):
    app, work, secret = tracked["app"], tracked["work"], tracked["secret"]
    commit = deploys_web(tracked)  # on main, but these deliveries do not say main moved
    git(work, "push", "-q", "origin", "HEAD:refs/heads/feature")
    git(work, "tag", "v1.0.0")
    git(work, "push", "-q", "origin", "v1.0.0")
    deliveries = {
        "another branch": signed(sender, push_body(sender, "refs/heads/feature", None, commit), secret),
        "a tag": signed(sender, push_body(sender, "refs/tags/v1.0.0", None, commit), secret, sender.tag_event),
    }
    for event, fixture in sender.other_events:
        body = (WEBHOOKS / fixture).read_bytes() if fixture else push_body(sender, TRACKED, tracked["base"], commit)
        deliveries[event] = signed(sender, body, secret, event)

    for what, (body, headers) in deliveries.items():
        assert answered(hook(app, body, headers), 200)["accepted"] is False, what
    assert syncs(app) == [] and versions_of(tracked, "web") == []


def test_the_tracked_branch_deleted_deploys_nothing_and_breaks_nothing(sender, tracked, git_server):  # noqa: F811
    app, secret = tracked["app"], tracked["secret"]
    commit = deploys_web(tracked)
    assert hook(app, *signed(sender, push_body(sender, TRACKED, tracked["base"], commit), secret)).status_code == 202
    assert worker_pass(app) == 1 and len(versions_of(tracked, "web")) == 1

    delete_tracked_branch(tracked, git_server)
    response = hook(app, *signed(sender, push_body(sender, TRACKED, commit, None), secret))
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    worker_pass(app)  # raises nothing, whatever the deletion asked for
    assert not [s.problems for s in syncs(app) if "internal error" in json.dumps(s.problems)]
    (version,) = versions_of(tracked, "web")
    assert version["source_commit"] == f"specs@{commit}"
    assert tracked["admin"].get("/api/v1/apps/demo/storefront/web").get_json()["deleted"] is False


def test_a_sync_after_the_tracked_branch_is_deleted_says_the_branch_is_gone(tracked, git_server):  # noqa: F811
    """Whatever the route makes of a deletion, the sync that follows must not call the repository synced."""
    app, secret = tracked["app"], tracked["secret"]
    github = SENDERS["github"]
    commit = deploys_web(tracked)
    assert hook(app, *signed(github, push_body(github, TRACKED, tracked["base"], commit), secret)).status_code == 202
    assert worker_pass(app) == 1

    delete_tracked_branch(tracked, git_server)
    assert hook(app, *signed(github, push_body(github, TRACKED, commit, None), secret)).status_code == 202
    assert worker_pass(app) == 1
    gone = syncs(app)[-1]
    assert (gone.state, [p["message"] for p in gone.problems]) == ("failed", ['the repository has no branch "main"'])
    assert tracked["admin"].get("/api/v1/spec-repos/specs").get_json()["state"] == "failing"


# --- bodies too large ---------------------------------------------------------------------------------------------

def over_the_limit(app, sender: Sender, tracked: dict, extra: int = 1) -> tuple[bytes, dict[str, str]]:
    """A push of ``web`` padded with blanks (JSON still) to MAX_CONTENT_LENGTH + ``extra`` bytes, signed."""
    body = push_body(sender, TRACKED, tracked["base"], deploys_web(tracked))
    return signed(sender, body.ljust(app.config["MAX_CONTENT_LENGTH"] + extra), tracked["secret"])


def test_a_body_over_max_content_length_is_413_and_one_at_the_limit_is_taken(tracked, served):  # noqa: F811
    app, github = tracked["app"], SENDERS["github"]
    body, headers = over_the_limit(app, github, tracked)
    refused = hook(app, body, headers)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (413, "payload_too_large")
    over_http = httpx.post(f"{served}/hooks/{app.config['TENANT']}/specs", content=body, headers=headers)
    assert (over_http.status_code, over_http.json()["error"]["code"]) == (413, "payload_too_large")
    assert syncs(app) == []

    assert hook(app, *over_the_limit(app, github, tracked, extra=0)).status_code == 202


def test_a_chunked_body_over_max_content_length_is_413_not_read_cut_short(sender, tracked, served):  # noqa: F811
    """With no Content-Length the limit is found while reading: the body must be refused, not cut to the
    limit and then checked (a signature over the whole body fails on the part; a token does not)."""
    app = tracked["app"]
    body, headers = over_the_limit(app, sender, tracked)
    half = len(body) // 2
    response = httpx.post(f"{served}/hooks/{app.config['TENANT']}/specs", content=iter([body[:half], body[half:]]),
                          headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large" and syncs(app) == []
