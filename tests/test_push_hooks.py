"""Push webhooks of five git providers: real payload formats, signed the way each provider signs.

The bodies are fixtures/webhooks/ (see its README for where each format comes from);
each test signs the exact bytes with HMAC as the provider documents it, and sends the
headers a real delivery carries, as Flask would hand them over (a case-insensitive
mapping) and as a plain dict of lowercase names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from werkzeug.datastructures import Headers

from gitops.push_hooks import MAX_BODY_BYTES, HookRefused, Provider, Push, read_pushes, verify
from webapp.errors import HTTP_STATUS

WEBHOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
SECRET = "whsec-9d1f0c2b7a6e4d3c"
BEFORE = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
AFTER = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98"
ZEROS = "0" * 40
DELIVERY = "f5d71c81-d348-443f-946d-b09c328957d0"


def hex_hmac(secret: str, body: bytes, digest=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, digest).hexdigest()


def github_headers(body: bytes, secret: str, event: str = "push") -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": DELIVERY,
        "X-GitHub-Hook-ID": "488201337",
        "X-Hub-Signature": "sha1=" + hex_hmac(secret, body, hashlib.sha1),
        "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body),
        "User-Agent": "GitHub-Hookshot/8e03811",
        "Content-Type": "application/json",
    }


def gitlab_headers(body: bytes, secret: str, event: str = "Push Hook") -> dict[str, str]:
    return {
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": secret,
        "Idempotency-Key": DELIVERY,
        "X-Gitlab-Event-UUID": "555416bf-561b-4c41-a411-1fdc0954da09",
        "X-Gitlab-Webhook-UUID": "4ad8b0ab-79a5-4589-beb7-ba06a64848f4",
        "X-Gitlab-Instance": "https://gitlab.acme.example",
        "User-Agent": "GitLab/17.9.0",
        "Content-Type": "application/json",
    }


def gitea_headers(body: bytes, secret: str, event: str = "push") -> dict[str, str]:
    signature = hex_hmac(secret, body)
    return {
        "X-Gitea-Event": event, "X-Gitea-Event-Type": event, "X-Gitea-Delivery": DELIVERY,
        "X-Gitea-Signature": signature,
        "X-Gogs-Event": event, "X-Gogs-Event-Type": event, "X-Gogs-Delivery": DELIVERY, "X-Gogs-Signature": signature,
        "X-GitHub-Event": event, "X-GitHub-Event-Type": event, "X-GitHub-Delivery": DELIVERY,
        "X-Hub-Signature": "sha1=" + hex_hmac(secret, body, hashlib.sha1),
        "X-Hub-Signature-256": "sha256=" + signature,
        "Content-Type": "application/json",
    }


def forgejo_headers(body: bytes, secret: str, event: str = "push") -> dict[str, str]:
    return {
        **gitea_headers(body, secret, event),
        "X-Forgejo-Event": event, "X-Forgejo-Event-Type": event, "X-Forgejo-Delivery": DELIVERY,
        "X-Forgejo-Signature": hex_hmac(secret, body),
    }


def bitbucket_cloud_headers(body: bytes, secret: str, event: str = "repo:push") -> dict[str, str]:
    return {
        "X-Event-Key": event,
        "X-Hook-UUID": "380d119c-6f4f-434d-b7b2-dc5459e8e589",
        "X-Request-UUID": DELIVERY,
        "X-Attempt-Number": "1",
        "X-Hub-Signature": "sha256=" + hex_hmac(secret, body),
        "User-Agent": "Bitbucket-Webhooks/2.0",
        "Content-Type": "application/json",
    }


def bitbucket_server_headers(body: bytes, secret: str, event: str = "repo:refs_changed") -> dict[str, str]:
    return {
        "X-Event-Key": event,
        "X-Request-Id": DELIVERY,
        "X-Hub-Signature": "sha256=" + hex_hmac(secret, body),
        "Content-Type": "application/json; charset=utf-8",
    }


# name: (fixture, headers of a delivery, provider, signature header names)
SENDERS = {
    "github": ("github-push.json", github_headers, Provider.GITHUB, ("X-Hub-Signature-256", "X-Hub-Signature")),
    "gitlab": ("gitlab-push.json", gitlab_headers, Provider.GITLAB, ("X-Gitlab-Token",)),
    "gitea": ("gitea-push.json", gitea_headers, Provider.GITEA,
              ("X-Gitea-Signature", "X-Gogs-Signature", "X-Hub-Signature", "X-Hub-Signature-256")),
    "forgejo": ("gitea-push.json", forgejo_headers, Provider.GITEA,
                ("X-Forgejo-Signature", "X-Gitea-Signature", "X-Gogs-Signature", "X-Hub-Signature",
                 "X-Hub-Signature-256")),
    "bitbucket-cloud": ("bitbucket-cloud-push.json", bitbucket_cloud_headers, Provider.BITBUCKET_CLOUD,
                        ("X-Hub-Signature",)),
    "bitbucket-server": ("bitbucket-server-push.json", bitbucket_server_headers, Provider.BITBUCKET_SERVER,
                         ("X-Hub-Signature",)),
}
HMAC_SENDERS = [name for name in SENDERS if name != "gitlab"]  # GitLab's token does not cover the body


def fixture(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


def delivery(sender: str, body: bytes | None = None, secret: str = SECRET, **event) -> tuple[dict, bytes]:
    name, headers_of, _, _ = SENDERS[sender]
    body = fixture(name) if body is None else body
    return headers_of(body, secret, **event), body


def lowercase(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def edited(name: str, edit) -> bytes:
    payload = json.loads(fixture(name))
    edit(payload)
    return json.dumps(payload).encode()


def refused(headers, body: bytes, secret: str | None = SECRET) -> HookRefused:
    with pytest.raises(HookRefused) as caught:
        verify(headers, body, secret)
    return caught.value


def read(sender: str, body: bytes | None = None, **event) -> list[Push]:
    headers, body = delivery(sender, body, **event)
    return read_pushes(verify(headers, body, SECRET), headers, body)


def read_refused(sender: str, body: bytes, **event) -> HookRefused:
    headers, body = delivery(sender, body, **event)
    provider = verify(headers, body, SECRET)
    with pytest.raises(HookRefused) as caught:
        read_pushes(provider, headers, body)
    return caught.value


# --- genuine deliveries verify and read ---------------------------------------------------------

EXPECTED = {
    "github": ("acme/deploy-specs", ("https://github.com/acme/deploy-specs.git", "git@github.com:acme/deploy-specs.git",
                                     "git://github.com/acme/deploy-specs.git", "https://github.com/acme/deploy-specs"),
               False),
    "gitlab": ("acme/deploy-specs", ("https://gitlab.acme.example/acme/deploy-specs.git",
                                     "git@gitlab.acme.example:acme/deploy-specs.git",
                                     "https://gitlab.acme.example/acme/deploy-specs"), None),
    "gitea": ("acme/deploy-specs", ("https://git.acme.example/acme/deploy-specs.git",
                                    "git@git.acme.example:acme/deploy-specs.git",
                                    "https://git.acme.example/acme/deploy-specs"), None),
    "bitbucket-cloud": ("acme/deploy-specs", ("https://bitbucket.org/acme/deploy-specs",), False),
    "bitbucket-server": ("PLAT/deploy-specs", ("ssh://git@bitbucket.acme.example:7999/plat/deploy-specs.git",
                                               "https://bitbucket.acme.example/scm/plat/deploy-specs.git"), None),
}
EXPECTED["forgejo"] = EXPECTED["gitea"]


@pytest.mark.parametrize("as_flask_gives_them", [True, False], ids=["werkzeug-headers", "lowercase-dict"])
@pytest.mark.parametrize("sender", SENDERS)
def test_a_genuine_push_verifies_and_reads(sender, as_flask_gives_them):
    headers, body = delivery(sender)
    headers = Headers(headers) if as_flask_gives_them else lowercase(headers)
    provider = verify(headers, body, SECRET)
    assert provider is SENDERS[sender][2]
    pushes = read_pushes(provider, headers, body)
    repository, urls, forced = EXPECTED[sender]
    assert pushes[0] == Push(provider=provider, delivery=DELIVERY, ref="refs/heads/main", before=BEFORE, after=AFTER,
                             forced=forced, repository=repository, repository_urls=urls)
    assert pushes[0].branch == "main" and not pushes[0].created and not pushes[0].deleted


def test_a_bitbucket_cloud_push_of_two_refs_reads_as_two_pushes():
    main, release = read("bitbucket-cloud")
    assert (main.ref, main.before, main.after, main.created) == ("refs/heads/main", BEFORE, AFTER, False)
    assert (release.ref, release.branch, release.before, release.after) == (
        "refs/heads/release/2025-03", "release/2025-03", None, AFTER)
    assert release.created and not release.deleted
    assert main.delivery == release.delivery == DELIVERY


def test_a_redelivery_reads_the_same_so_it_can_be_deduplicated():
    first, again = read("github"), read("github")
    assert first == again and first[0].delivery == DELIVERY


def test_gitlab_delivery_id_falls_back_to_the_event_uuid_before_idempotency_keys():
    headers, body = delivery("gitlab")
    del headers["Idempotency-Key"]
    (push,) = read_pushes(verify(headers, body, SECRET), headers, body)
    assert push.delivery == "555416bf-561b-4c41-a411-1fdc0954da09"


def test_a_gitlab_tag_push_reads_the_commit_the_tag_points_to():
    def annotated_tag(payload):
        payload.update(object_kind="tag_push", event_name="tag_push", ref="refs/tags/v1.4.0", before=ZEROS,
                       after="4a0a19218e082a343a1b17e5333409af9d98f0f5", checkout_sha=AFTER)

    (push,) = read("gitlab", edited("gitlab-push.json", annotated_tag), event="Tag Push Hook")
    assert (push.ref, push.branch, push.before, push.after) == ("refs/tags/v1.4.0", None, None, AFTER)
    assert push.created


# --- created, deleted, forced -------------------------------------------------------------------

def test_github_branch_creation_deletion_and_forced_push_are_flagged():
    (created,) = read("github", edited("github-push.json", lambda p: p.update(before=ZEROS, created=True)))
    assert created.created and created.before is None and created.after == AFTER
    (deleted,) = read("github", edited("github-push.json", lambda p: p.update(after=ZEROS, deleted=True)))
    assert deleted.deleted and deleted.after is None and deleted.before == BEFORE
    (forced,) = read("github", edited("github-push.json", lambda p: p.update(forced=True)))
    assert forced.forced is True


def test_gitlab_branch_deletion_has_no_checkout_sha():
    (push,) = read("gitlab", edited("gitlab-push.json", lambda p: p.update(after=ZEROS, checkout_sha=None)))
    assert push.deleted and push.before == BEFORE


def test_gitea_branch_creation_is_flagged():
    (push,) = read("forgejo", edited("gitea-push.json", lambda p: p.update(before=ZEROS)))
    assert push.created and push.forced is None


def test_bitbucket_cloud_deletion_and_forced_push_are_flagged():
    def deleted_and_forced(payload):
        main, release = payload["push"]["changes"]
        main["forced"] = True
        release.update(old=release["new"], new=None, created=False, closed=True)

    main, release = read("bitbucket-cloud", edited("bitbucket-cloud-push.json", deleted_and_forced))
    assert main.forced is True
    assert release.deleted and release.ref == "refs/heads/release/2025-03" and release.before == AFTER


def test_bitbucket_server_creation_and_deletion_are_flagged():
    def add_and_delete(payload):
        change = payload["changes"][0]
        payload["changes"] = [
            {**change, "ref": {"id": "refs/heads/next", "displayId": "next", "type": "BRANCH"},
             "refId": "refs/heads/next", "fromHash": ZEROS, "type": "ADD"},
            {**change, "toHash": ZEROS, "type": "DELETE"},
        ]

    added, removed = read("bitbucket-server", edited("bitbucket-server-push.json", add_and_delete))
    assert (added.ref, added.created, added.after) == ("refs/heads/next", True, AFTER)
    assert (removed.ref, removed.deleted, removed.before) == ("refs/heads/main", True, BEFORE)


# --- pings, tests and other events carry no push ------------------------------------------------

@pytest.mark.parametrize("sender, fixture_name, event", [
    ("github", "github-ping.json", "ping"),
    ("github", "github-push.json", "pull_request"),
    ("gitlab", "gitlab-push.json", "Merge Request Hook"),
    ("gitlab", "gitlab-push.json", "System Hook"),
    ("gitea", "gitea-push.json", "create"),
    ("bitbucket-cloud", "bitbucket-cloud-push.json", "pullrequest:created"),
    ("bitbucket-server", "bitbucket-server-ping.json", "diagnostics:ping"),
])
def test_pings_and_other_events_verify_but_give_no_push(sender, fixture_name, event):
    assert read(sender, fixture(fixture_name), event=event) == []


# --- refused with 401 ---------------------------------------------------------------------------

def assert_signature_refusal(exc: HookRefused, *, secrets: tuple[str, ...] = (SECRET,), headers=None):
    assert exc.status == 401 and exc.code == "unauthorized" and HTTP_STATUS[exc.code] == 401
    assert str(exc) == "webhook signature missing or not valid"
    for secret in secrets:
        assert secret not in str(exc) and secret not in exc.reason
    for value in (headers or {}).values():
        if len(value) >= 40:  # a signature or token: never in what is logged or answered
            assert value not in exc.reason and value not in str(exc)


@pytest.mark.parametrize("sender", SENDERS)
def test_a_wrong_secret_is_refused(sender):
    headers, body = delivery(sender, secret="someone-elses-secret-0123456789abcdef0123")
    assert_signature_refusal(refused(headers, body), secrets=(SECRET, "someone-elses-secret"), headers=headers)


@pytest.mark.parametrize("sender", HMAC_SENDERS)
def test_a_body_changed_by_one_byte_is_refused(sender):
    headers, body = delivery(sender)
    tampered = body.replace(AFTER.encode(), AFTER[:-1].encode() + b"0", 1)
    assert len(tampered) == len(body) and tampered != body
    assert_signature_refusal(refused(headers, tampered), headers=headers)


@pytest.mark.parametrize("sender", SENDERS)
def test_a_delivery_without_its_signature_is_refused(sender):
    headers, body = delivery(sender)
    for name in SENDERS[sender][3]:
        del headers[name]
    assert_signature_refusal(refused(headers, body))


@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize("secret", ["", None])
def test_no_secret_on_our_side_refuses_everything(sender, secret):
    headers, body = delivery(sender, secret="")  # even one signed with the empty key
    assert_signature_refusal(refused(headers, body, secret=secret))


def test_github_legacy_sha1_signature_alone_is_refused():
    headers, body = delivery("github")
    del headers["X-Hub-Signature-256"]
    exc = refused(headers, body)
    assert_signature_refusal(exc)
    assert "SHA-1" in exc.reason


@pytest.mark.parametrize("sender, header, value", [
    ("github", "X-Hub-Signature-256", lambda body: "sha1=" + hex_hmac(SECRET, body, hashlib.sha1)),
    ("github", "X-Hub-Signature-256", lambda body: hex_hmac(SECRET, body)),
    ("github", "X-Hub-Signature-256", lambda body: "sha256=" + hex_hmac(SECRET, body)[:-2]),
    ("github", "X-Hub-Signature-256", lambda body: "sha256=" + hex_hmac(SECRET, body)[:-1] + "g"),
    ("github", "X-Hub-Signature-256", lambda body: "sha512=" + hmac.new(SECRET.encode(), body, "sha512").hexdigest()),
    ("gitea", "X-Gitea-Signature", lambda body: "sha256=" + hex_hmac(SECRET, body)),
    ("forgejo", "X-Forgejo-Signature", lambda body: hex_hmac(SECRET, body, hashlib.sha1)),
    ("bitbucket-cloud", "X-Hub-Signature", lambda body: "sha1=" + hex_hmac(SECRET, body, hashlib.sha1)),
    ("bitbucket-cloud", "X-Hub-Signature", lambda body: hex_hmac(SECRET, body)),
    ("bitbucket-server", "X-Hub-Signature", lambda body: "sha256=" + hex_hmac(SECRET, body) + " "),
    ("bitbucket-server", "X-Hub-Signature", lambda body: ""),
    ("gitlab", "X-Gitlab-Token", lambda body: SECRET + " "),
    ("gitlab", "X-Gitlab-Token", lambda body: "\udcff" + SECRET),
])
def test_a_signature_of_the_wrong_algorithm_or_shape_is_refused(sender, header, value):
    headers, body = delivery(sender)
    headers[header] = value(body)
    assert_signature_refusal(refused(headers, body))


def test_forgejo_signature_is_the_one_checked_when_both_are_sent():
    headers, body = delivery("forgejo")
    headers["X-Forgejo-Signature"] = hex_hmac("someone-elses-secret", body)
    assert_signature_refusal(refused(headers, body))


def test_uppercase_hex_of_the_right_digest_is_the_same_signature():
    headers, body = delivery("bitbucket-server")
    headers["X-Hub-Signature"] = "sha256=" + hex_hmac(SECRET, body).upper()
    assert verify(headers, body, SECRET) is Provider.BITBUCKET_SERVER


# --- refused with 400 and 413 -------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    {"X-Event-Key": "repo:push", "X-Hub-Signature": "sha256=" + "0" * 64},
])
def test_headers_of_no_known_provider_are_refused_with_400(headers):
    exc = refused(headers, fixture("github-push.json"))
    assert (exc.status, exc.code, HTTP_STATUS[exc.code]) == (400, "invalid_request", 400)


def test_an_oversize_body_is_refused_with_413_before_anything_else():
    body = b" " * (MAX_BODY_BYTES + 1)
    for headers in ({}, delivery("github", body)[0]):
        exc = refused(headers, body)
        assert (exc.status, exc.code, HTTP_STATUS[exc.code]) == (413, "payload_too_large", 413)
    at_the_limit = fixture("github-push.json").ljust(MAX_BODY_BYTES)
    assert verify(delivery("github", at_the_limit)[0], at_the_limit, SECRET) is Provider.GITHUB


def drop(*path):
    def edit(payload):
        for key in path[:-1]:
            payload = payload[key]
        del payload[path[-1]]
    return edit


def put(value, *path):
    def edit(payload):
        for key in path[:-1]:
            payload = payload[key]
        payload[path[-1]] = value
    return edit


@pytest.mark.parametrize("sender, body", [
    ("github", b"not json {"),
    ("github", b"\xff\xfe{}"),
    ("github", b"[]"),
    ("github", b'"refs/heads/main"'),
    ("github", b"[" * 100_000),
    ("gitea", b"{}"),
    ("github", edited("github-push.json", drop("ref"))),
    ("github", edited("github-push.json", put(7, "ref"))),
    ("github", edited("github-push.json", put("main", "ref"))),
    ("github", edited("github-push.json", put("refs/heads/main\n", "ref"))),
    ("github", edited("github-push.json", drop("after"))),
    ("github", edited("github-push.json", put(None, "before"))),
    ("github", edited("github-push.json", put("HEAD~1", "before"))),
    ("github", edited("github-push.json", put("e9d71f5", "after"))),
    ("github", edited("github-push.json", put("yes", "forced"))),
    ("github", edited("github-push.json", drop("repository"))),
    ("github", edited("github-push.json", put(["acme/deploy-specs"], "repository", "full_name"))),
    ("gitlab", edited("gitlab-push.json", drop("project"))),
    ("gitlab", edited("gitlab-push.json", put(12, "checkout_sha"))),
    ("gitea", edited("gitea-push.json", put({"ref": "x"}, "ref"))),
    ("bitbucket-cloud", edited("bitbucket-cloud-push.json", put({"changes": {}}, "push"))),
    ("bitbucket-cloud", edited("bitbucket-cloud-push.json", put(["change"], "push", "changes"))),
    ("bitbucket-cloud", edited("bitbucket-cloud-push.json", put(None, "push", "changes", 1, "new"))),
    ("bitbucket-cloud", edited("bitbucket-cloud-push.json", put("bookmark", "push", "changes", 0, "new", "type"))),
    ("bitbucket-cloud", edited("bitbucket-cloud-push.json", drop("push", "changes", 0, "new", "target", "hash"))),
    ("bitbucket-cloud", edited("bitbucket-cloud-push.json", drop("repository", "links"))),
    ("bitbucket-server", edited("bitbucket-server-push.json", put(None, "changes"))),
    ("bitbucket-server", edited("bitbucket-server-push.json", drop("changes", 0, "toHash"))),
    ("bitbucket-server", edited("bitbucket-server-push.json", drop("repository", "project"))),
])
def test_a_malformed_body_after_a_good_signature_is_refused_with_400(sender, body):
    exc = read_refused(sender, body)
    assert (exc.status, exc.code) == (400, "invalid_request")
    assert str(exc) == exc.reason and SECRET not in exc.reason


@pytest.mark.parametrize("delivery_id", [None, "", "x" * 129, "id with spaces", "id\nsecond-line"])
def test_a_push_without_a_usable_delivery_id_is_refused_with_400(delivery_id):
    headers, body = delivery("github")
    if delivery_id is None:
        del headers["X-GitHub-Delivery"]
    else:
        headers["X-GitHub-Delivery"] = delivery_id
    provider = verify(headers, body, SECRET)
    exc = pytest.raises(HookRefused, read_pushes, provider, headers, body).value
    assert exc.status == 400 and "X-GitHub-Delivery" in str(exc)
