"""How many specs one deploy request may hold, and how large each may be.

``PUT /api/v1/apps`` (deploy and dry run, YAML or JSON body) refuses more than
MAX_SPECS_PER_REQUEST specs, or a spec over MAX_SPEC_BYTES, with 413 before any
spec is parsed: the specs are counted by a scan for document markers
(renderer.yamlio.document_spans), which must never count fewer documents than
the parsers read, or a body could slip more past the limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from gitops.models import AuditEvent, Version
from contract.errors import SpecError
from renderer.yamlio import MAX_EXPANDED_NODES, _load_with_ruamel, document_spans, load_documents
from tests.plane import add_cluster, add_workspace, deploy_yaml, service_spec
from tests.test_api import error, ok
from tests.test_yaml_parity import document_text
from webapp import config as config_module

API = "/api/v1"
ROOT = Path(__file__).resolve().parent.parent


# --- counting documents without parsing them -------------------------------------------------------


def parsed(text: str) -> int | None:
    """How many documents ruamel (the reference reader, which also takes what libyaml leaves) reads."""
    try:
        return len(_load_with_ruamel(text, "<test>", MAX_EXPANDED_NODES))
    except SpecError:
        return None


def readable_fixtures() -> list[tuple[Path, int]]:
    """Every fixture a parser reads, with its number of documents (the invalid YAML ones are left out:
    the scan is only asked to count what will be parsed)."""
    readable = []
    for path in sorted((ROOT / "fixtures").rglob("*.yaml")):
        try:
            readable.append((path, len(load_documents(path.read_text()))))
        except SpecError:
            continue
    return readable


@pytest.mark.parametrize("path,expected", readable_fixtures(), ids=lambda p: getattr(p, "name", str(p)))
def test_the_scan_counts_what_the_parser_reads_in_every_fixture(path, expected):
    assert len(document_spans(path.read_text())) == expected


@pytest.mark.parametrize("text,count", [
    ("a: 1\n", 1), ("---\na: 1\n---\nb: 2\n", 2), ("# c\n---\na: 1\n---\n# trailing\n---\n", 1),
    ("--- {a: 1}\n--- [b]\n--- |\n  c\n", 3), ("a: 1\n--- # c\nb: 2\n...\nc: 3\n", 3), ("%YAML 1.2\n---\na: 1\n", 1),
    ("a: |\n  --- not a marker\nb: '--- nor this'\n", 1), ("a: 1\r---\rb: 2\r", 2), ("a: 1\r\n---\r\nb: 2\r\n", 2),
    ("", 0), ("---\n...\n", 0),
])
def test_the_scan_counts_documents_as_the_parser_does(text, count):
    assert parsed(text) == count
    assert len(document_spans(text)) == count


@pytest.mark.parametrize("separator", ["\n---\n", "\r---\r", "\n\ufeff---\n", "\x85---\x85", "\u2028---\u2028",
                                       "\n--- ", "\n---\t", "\n...\n"])
def test_the_scan_sees_every_line_break_and_marker_a_parser_knows(separator):
    text = separator.join(f"a{i}: {i}" for i in range(5)) + "\n"
    assert parsed(text) in (5, None)  # None: ruamel refuses it, but only after reading it
    assert len(document_spans(text)) == 5


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_the_scan_never_counts_fewer_documents_than_the_parser_reads(data):
    text = document_text(lambda options: data.draw(st.sampled_from(options)))
    text = text.replace("\n", data.draw(st.sampled_from(["\n", "\r\n", "\r"])))
    read = parsed(text)
    if read is not None:
        assert len(document_spans(text)) >= read, text


def test_the_scan_measures_each_document_in_utf8_bytes():
    text = "a: 1\n---\nname: é\n---\n# only a comment\n"
    first, second = document_spans(text)
    assert (first.line, first.size) == (1, len(b"a: 1\n"))
    assert (second.line, second.size) == (2, len("---\nname: é\n".encode()))


# --- the API ------------------------------------------------------------------------------------------


def specs(count: int, prefix: str = "app") -> list[str]:
    return [service_spec(f"{prefix}-{index}") for index in range(count)]


def recorded(plane_app) -> tuple[int, int]:
    """Versions and deploy audit events: a refused request must leave neither."""
    with plane_app.extensions["shipyard"].sessions() as session:
        return (session.scalar(select(func.count()).select_from(Version)),
                session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "app.deploy")))


@pytest.fixture
def seeded(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    return admin


def test_one_spec_over_the_count_is_refused_in_every_form(plane_app, seeded):
    admin = seeded
    limit = plane_app.config["MAX_SPECS_PER_REQUEST"]
    over = specs(limit + 1)
    for response in (deploy_yaml(admin, "---\n".join(over)),
                     deploy_yaml(admin, "---\n".join(over), dry_run="true"),
                     admin.put(f"{API}/apps", json={"spec": "---\n".join(over)}),
                     admin.put(f"{API}/apps", json={"spec": [{"type": "service", "name": f"a{i}"}
                                                             for i in range(limit + 1)], "dry_run": True})):
        refused = error(response, 413, "payload_too_large")
        assert f"{limit + 1} specs" in refused["message"] and f"the {limit} one request may hold" in refused["message"]
        assert "MAX_SPECS_PER_REQUEST" in refused["message"] and "split them" in refused["message"]
    assert recorded(plane_app) == (0, 0)

    # Exactly the limit goes through, as a dry run and as a deploy.
    at_limit = "---\n".join(specs(limit))
    assert len(ok(deploy_yaml(admin, at_limit, dry_run="true"))["apps"]) == limit
    assert len(ok(deploy_yaml(admin, at_limit))["versions"]) == limit
    assert recorded(plane_app) == (limit, limit)


def test_thousands_of_specs_are_refused_before_any_is_parsed(plane_app, seeded):
    admin = seeded
    # as short as a spec gets, so that 6,000 fit under MAX_CONTENT_LENGTH; parsing and validating
    # them alone takes about a second, rendering them minutes
    documents = [f"type: service\nname: a{i}\nworkspace_fqn: demo:storefront\n"
                 "image: {type: image, image_uri: x}\nports: [{port: 80}]" for i in range(6000)]
    # Broken YAML far down the body: a server that parsed before counting would answer 422 for it.
    documents[4321] = "type: service\nname: [never closed\n"
    body = "\n---\n".join(documents)
    assert len(body) < plane_app.config["MAX_CONTENT_LENGTH"]
    refused = error(deploy_yaml(admin, body), 413, "payload_too_large")
    assert "6000 specs" in refused["message"]
    assert recorded(plane_app) == (0, 0)


def test_a_spec_over_the_size_limit_is_refused_with_its_line(plane_app, seeded):
    admin = seeded
    plane_app.config["MAX_SPEC_BYTES"] = 4096  # read on every request
    small, large = service_spec("small"), service_spec("large") + "# " + "x" * 4096 + "\n"
    text = f"{small}---\n{large}"
    refused = error(deploy_yaml(admin, text, filename="apps.yaml"), 413, "payload_too_large")
    large_line = small.count("\n") + 1
    assert refused["message"].startswith(f"apps.yaml:{large_line}: spec 2 is {len(large) + 4} bytes")
    assert "4096 bytes one spec may have (MAX_SPEC_BYTES)" in refused["message"]
    error(admin.put(f"{API}/apps", json={"spec": [{"type": "service", "name": "x" * 5000}]}), 413, "payload_too_large")
    assert recorded(plane_app) == (0, 0)
    assert len(ok(deploy_yaml(admin, small))["versions"]) == 1


def test_the_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SHIPYARD_MAX_SPECS_PER_REQUEST", "500")
    monkeypatch.setenv("SHIPYARD_MAX_SPEC_BYTES", "65536")
    holder = Flask("test")
    config_module.load(holder, {"DATA_DIR": str(tmp_path), "SECRET_KEY": "x"})
    assert (holder.config["MAX_SPECS_PER_REQUEST"], holder.config["MAX_SPEC_BYTES"]) == (500, 65536)
