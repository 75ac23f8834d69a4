"""The webhook's repository check: a verified push naming another repository is synced, with a warning.

A push's payload names the repository's URLs (GitHub and Gitea: clone, ssh, git and web URLs;
GitLab: http, ssh and web; Bitbucket Cloud: the web URL only; Bitbucket Server: its clone
links). None of them being the registered repository means the webhook is set on the wrong
repository, or on a mirror: the sync is asked for all the same (it fetches only the registered
URL), and the answer carries a ``warning`` naming both, for the provider's delivery log. The
URLs are compared as host and path (gitops.push_hooks.names_repository). Every verified
delivery also records its provider on the repository, where commit statuses then go.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from gitops.push_hooks import names_repository, repository_key
from tests.gitserver import git_server  # noqa: F401 - a fixture
from tests.plane import service_spec
from tests.test_spec_repos import (  # noqa: F401 - plane_app, world: fixtures
    bind, github_delivery, hook, plane_app, push, register, syncs, world)

API = "/api/v1"
WEBHOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"


@pytest.mark.parametrize("url, other", [
    ("https://github.com/acme/specs.git", "https://github.com/acme/specs"),
    ("https://github.com/acme/specs.git", "git@github.com:acme/specs.git"),
    ("https://github.com/acme/specs.git", "git://github.com/acme/specs.git"),
    ("https://github.com/acme/specs.git", "ssh://git@github.com:22/acme/specs.git"),
    ("https://github.com/acme/specs.git", "https://user:token@GitHub.com/Acme/Specs/"),
    ("https://gitlab.example.com:8443/group/sub/specs.git", "git@gitlab.example.com:group/sub/specs.git"),
    ("git@bitbucket.org:acme/specs.git", "https://bitbucket.org/acme/specs"),
    ("git@[2001:db8::1]:acme/specs.git", "https://[2001:db8::1]/acme/specs"),
])
def test_urls_of_one_repository_compare_equal(url, other):
    assert repository_key(url) == repository_key(other)
    assert names_repository([other, "https://example.com/else.git"], url)


@pytest.mark.parametrize("url, other", [
    ("https://github.com/acme/specs.git", "https://github.com/acme/specs-old.git"),
    ("https://github.com/acme/specs.git", "https://github.com/other/specs.git"),
    ("https://github.com/acme/specs.git", "https://gitlab.com/acme/specs.git"),
    ("https://github.com/acme/specs.git", "https://github.com/acme/specs/sub"),
])
def test_urls_of_other_repositories_do_not(url, other):
    assert not names_repository([other], url)
    assert not names_repository([], url)


def with_urls(body: bytes, secret: str, headers: dict, **urls: str) -> tuple[bytes, dict]:
    """A GitHub delivery with its repository's URLs replaced, signed again."""
    payload = json.loads(body)
    payload["repository"].update(urls)
    signed = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return signed, {**headers, "X-Hub-Signature-256": signature}


def test_a_push_naming_another_repository_is_synced_with_a_warning(world):  # noqa: F811
    app = world["app"]
    first = push(world["work"], {"deploy/web.yaml": service_spec("web")})
    secret = register(world).webhook_secret
    bind(world)
    shown = world["admin"].get(f"{API}/spec-repos/specs").get_json()
    assert (shown["webhook_provider"], shown["commit_status"], shown["commit_status_provider"]) == \
        (None, "auto", None)  # 127.0.0.1 is no provider's host, and no delivery came yet

    # The fixture's payload names github.com/acme/deploy-specs: not the registered repository.
    body, headers = github_delivery("0" * 40, first, secret, "d-1")
    body, headers = with_urls(body, secret, headers, clone_url="https://deploy:s3cret@github.com/acme/deploy-specs.git")
    answer = hook(app, body, headers)
    assert answer.status_code == 202 and answer.get_json()["accepted"] is True
    warning = answer.get_json()["warning"]
    assert "https://github.com/acme/deploy-specs.git" in warning and world["url"] in warning
    assert "s3cret" not in warning and "deploy:" not in warning
    assert [s.delivery for s in syncs(app)] == ["d-1"]  # asked for all the same
    shown = world["admin"].get(f"{API}/spec-repos/specs").get_json()
    assert (shown["webhook_provider"], shown["commit_status_provider"]) == ("github", "github")

    # Naming the registered repository, in any of its forms: no warning.
    host_path = world["url"].removeprefix("https://")
    body, headers = github_delivery(first, first, secret, "d-2")
    body, headers = with_urls(body, secret, headers, clone_url=f"https://{host_path.upper()}",
                              ssh_url="git@elsewhere.example:acme/x.git", git_url="", html_url="")
    answer = hook(app, body, headers)
    assert answer.status_code == 202 and "warning" not in answer.get_json()


def bitbucket_cloud_delivery(secret: str, href: str, before: str, after: str, delivery: str):
    payload = json.loads((WEBHOOKS / "bitbucket-cloud-push.json").read_text())
    change = copy.deepcopy(payload["push"]["changes"][0])
    change["old"]["target"]["hash"], change["new"]["target"]["hash"] = before, after
    payload["push"]["changes"] = [change]
    payload["repository"]["links"]["html"]["href"] = href
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Event-Key": "repo:push", "X-Request-UUID": delivery,
                  "X-Hook-UUID": "380d119c-6f4f-434d-b7b2-dc5459e8e589", "X-Hub-Signature": signature}


def test_bitbucket_cloud_names_only_its_web_url_and_that_is_compared(world):  # noqa: F811
    app = world["app"]
    first = push(world["work"], {"deploy/web.yaml": service_spec("web")})
    second = push(world["work"], {"deploy/web.yaml": service_spec("web", image="ghcr.io/acme/web:2.0")})
    secret = register(world).webhook_secret
    web_url = world["url"].removesuffix(".git")
    same = hook(app, *bitbucket_cloud_delivery(secret, web_url, first, second, "b-1"))
    assert same.status_code == 202 and "warning" not in same.get_json()
    other = hook(app, *bitbucket_cloud_delivery(secret, "https://bitbucket.org/acme/deploy-specs", first, second,
                                                 "b-2"))
    assert other.status_code == 202 and "https://bitbucket.org/acme/deploy-specs" in other.get_json()["warning"]
    assert [s.delivery for s in syncs(app)] == ["b-1", "b-2"]
    assert world["admin"].get(f"{API}/spec-repos/specs").get_json()["webhook_provider"] == "bitbucket-cloud"
