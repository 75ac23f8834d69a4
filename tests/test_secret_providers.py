"""Secret references resolve on every External Secrets provider, or are refused where they are written.

Each profile here differs only in ``addons.external_secrets.provider``; what a
reference becomes on each is renderer.secret_refs (table in docs/secrets.md).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from contract.errors import ProfileError, SpecError
from gitops.isolation import secret_problems
from renderer.bootstrap import render_agent, render_bootstrap
from renderer.profiles import ClusterProfile, load_profile_text
from renderer.render import render
from renderer.secret_refs import PROVIDERS, UnmappableSecretRef, remote_ref_on
from renderer.spec import SecretRef, load_specs, parse_secret_ref

PROFILE = """\
name: lab
flavor: kind
git: {repo_url: https://git.example.com/lab.git}
addons:
  external_secrets: {store: secrets%s}
"""

SPEC = """\
type: service
name: api
workspace_fqn: lab:storefront
image:
  type: image
  image_uri: ghcr.io/acme/api:1.0.0
env:
  LOG_LEVEL: info
"""

AZURE_VERSION = "4387e9f3d6e14c459867679a90fd0f79"


def profile(provider: str | None, extra: str = "") -> ClusterProfile:
    return load_profile_text(PROFILE % (f", provider: {provider}" if provider else "") + extra, "lab.yaml")


def render_env(provider: str | None, env: str, schemas=None):
    [spec] = load_specs(SPEC + env, "api.yaml")
    return render(spec, profile(provider), *(() if schemas is None else (schemas,)))


def external_data(rendering) -> list[dict]:
    [external] = [o for o in rendering.objects if o["kind"] == "ExternalSecret"]
    return external["spec"]["data"]


# --- what each provider gets ---------------------------------------------------------------------


@pytest.mark.parametrize("provider, version, db, token", [
    ("vault", "2",
     {"key": "storefront/db", "property": "password", "version": "2"},
     {"key": "acme/ml-models", "property": "hf-token"}),
    ("aws-secrets-manager", "AWSPREVIOUS",
     {"key": "storefront/db", "property": "password", "version": "AWSPREVIOUS"},
     {"key": "acme/ml-models", "property": "hf-token"}),
    ("aws-parameter-store", "2",
     {"key": "/storefront/db/password", "version": "2"},
     {"key": "/acme/ml-models/hf-token"}),
    ("gcp-secret-manager", "2",
     {"key": "storefront--db--password", "version": "2"},
     {"key": "acme--ml-models--hf-token"}),
    ("azure-key-vault", AZURE_VERSION,
     {"key": "secret/storefront--db--password", "version": AZURE_VERSION},
     {"key": "secret/acme--ml-models--hf-token"}),
    ("other", "2",
     {"key": "storefront/db", "property": "password", "version": "2"},
     {"key": "acme/ml-models", "property": "hf-token"}),
    (None, "2",  # a profile that names no provider: the generic form
     {"key": "storefront/db", "property": "password", "version": "2"},
     {"key": "acme/ml-models", "property": "hf-token"}),
])
def test_each_provider_reads_the_secret_as_its_store_names_it(kube_schemas, provider, version, db, token):
    rendering = render_env(provider, f"  DB_PASSWORD: secret://storefront/db#password@{version}\n"
                                     "  HF_TOKEN: tfy-secret://acme:ml-models:hf-token\n", kube_schemas)
    assert external_data(rendering) == [{"secretKey": "DB_PASSWORD", "remoteRef": db},
                                        {"secretKey": "HF_TOKEN", "remoteRef": token}]
    [workload] = [o for o in rendering.objects if o["kind"] == "Deployment"]
    env = {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "api-secrets", "key": "DB_PASSWORD"}}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_pinned_external_secret_is_valid_for_its_crd(crd_schemas, provider):
    version = {"aws-secrets-manager": "AWSCURRENT", "azure-key-vault": AZURE_VERSION}.get(provider, "7")
    rendering = render_env(provider, f"  DB_PASSWORD: secret://storefront/db#password@{version}\n", crd_schemas)
    [external] = [o for o in rendering.objects if o["kind"] == "ExternalSecret"]
    assert external["spec"]["data"][0]["remoteRef"]["version"] == version
    assert crd_schemas.validate(external, rendering.profile.kubernetes_version)


def test_a_secrets_manager_version_id_is_read_as_one():
    version_id = "123e4567-e89b-12d3-a456-426614174000"
    rendering = render_env("aws-secrets-manager", f"  DB_PASSWORD: secret://storefront/db#password@{version_id}\n")
    assert external_data(rendering)[0]["remoteRef"]["version"] == f"uuid/{version_id}"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tfy_secret_names_the_same_secret_as_its_path_form(provider):
    truefoundry = parse_secret_ref("tfy-secret://acme:payments:db-password")
    assert truefoundry == SecretRef("acme/payments", "db-password")
    assert remote_ref_on(truefoundry, provider, "lab") == remote_ref_on(
        parse_secret_ref("secret://acme/payments#db-password"), provider, "lab")
    assert parse_secret_ref("tfy-secret://acme:payments:db-password@3") == SecretRef("acme/payments", "db-password", "3")


# --- what is refused, where ----------------------------------------------------------------------


@pytest.mark.parametrize("provider, value, words", [
    ("gcp-secret-manager", "secret://storefront/db.primary#password",
     ["Google Secret Manager", '"db.primary" has "."', "write secret://storefront/db-primary#password",
      '"storefront--db-primary--password"']),
    ("gcp-secret-manager", "secret://storefront/db--primary#password",
     ['"/" becomes "--"', '"db--primary"', "write secret://storefront/db-primary#password"]),
    ("gcp-secret-manager", "secret://storefront/db#password@v.1",
     ['a version number, "latest" or an alias', 'not "v.1"']),
    ("azure-key-vault", "tfy-secret://acme:ml-models:HF_TOKEN",
     ["Azure Key Vault", '"HF_TOKEN" has "E", "F", "H", "K", "N", "O", "T", "_"', "without regard to case",
      "write secret://acme/ml-models#hf-token"]),
    ("azure-key-vault", "secret://storefront/db-#password",
     ['"db-"', 'begin or end with "-"', "write secret://storefront/db#password"]),
    ("azure-key-vault", "secret://storefront/db#password@3", ["a 32-character object version", 'not "3"']),
    ("aws-parameter-store", "secret://SSM-storefront/db#password",
     ["Parameter Store", 'begin with "aws" or "ssm"', '"/SSM-storefront"']),
    ("aws-parameter-store", "secret://storefront/" + "/".join("abcdefghijklmn") + "#password",
     ["at most 15 levels", "has 16"]),
    ("aws-parameter-store", "secret://storefront/db#password@ssm-label", ["a parameter version number or a label"]),
    ("aws-parameter-store", "secret://storefront/" + "d" * 950 + "#password", ["at most 967 characters"]),
    ("aws-secrets-manager", "secret://storefront/" + "d" * 510 + "#password", ["at most 512 characters, not 521"]),
    ("vault", "secret://storefront/db#password@latest", ["a KV v2 version number", "drop @latest"]),
])
def test_a_reference_the_store_cannot_name_is_refused_at_its_env_entry(provider, value, words):
    with pytest.raises(SpecError) as error:
        render_env(provider, f"  DB_PASSWORD: {value}\n")
    [problem] = error.value.problems
    assert (problem.line, problem.column, problem.path) == (9, 16, "/env/DB_PASSWORD")
    assert problem.message.startswith('env "DB_PASSWORD": cluster "lab" keeps secrets in ')
    for word in words:
        assert word in problem.message


def test_every_reference_a_store_cannot_name_is_reported_at_once():
    with pytest.raises(SpecError) as error:
        render_env("azure-key-vault", "  A: secret://storefront/db#api_key\n"
                                      "  B: secret://storefront/db#api-key\n"
                                      "  C: secret://storefront/Db#password\n")
    assert [p.path for p in error.value.problems] == ["/env/A", "/env/C"]


def test_without_external_secrets_only_the_missing_addon_is_reported():
    plain = ClusterProfile.from_dict({"name": "bare", "flavor": "kind", "git": {"repo_url": "https://g.example/b.git"}})
    [spec] = load_specs(SPEC.replace("lab:", "bare:") + "  DB: secret://storefront/Db.x#pass_word@v\n", "api.yaml")
    with pytest.raises(SpecError) as error:
        render(spec, plain)
    [problem] = error.value.problems
    assert "no external_secrets addon" in problem.message and problem.path == "/env/DB"


# --- one to one ------------------------------------------------------------------------------------

SEGMENTS = ["a", "b", "ab", "a-b", "a_b", "a.b", "A", "a--b", "-a", "a-", "a---b", "ab-", "b-a"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_references_never_read_the_same_secret(provider):
    paths = [*SEGMENTS, *("/".join(pair) for pair in itertools.product(SEGMENTS, repeat=2))]
    read_by: dict[tuple, SecretRef] = {}
    for path, key in itertools.product(paths, SEGMENTS):
        ref = SecretRef(path, key)
        try:
            entry = remote_ref_on(ref, provider, "lab")
        except UnmappableSecretRef:
            continue
        # Key Vault compares names without regard to case; the others compare them exactly
        name = entry["key"].lower() if provider == "azure-key-vault" else entry["key"]
        secret = (name, entry.get("property"))
        assert secret not in read_by, f"{ref} and {read_by[secret]} both read {secret}"
        read_by[secret] = ref
    assert len(read_by) >= 150, "the valid segments are nameable"


# --- the agent's token ----------------------------------------------------------------------------


def test_the_agent_token_is_read_as_the_store_names_it(kube_schemas):
    gke = profile("gcp-secret-manager",
                  "agent: {url: 'https://shipyard.example.com', token_ref: 'tfy-secret://platform:shipyard:agent-token'}\n")
    [external] = [o for o in render_bootstrap(gke, ["storefront"], kube_schemas).values() if o["kind"] == "ExternalSecret"]
    assert external["spec"]["data"] == [{"secretKey": "token", "remoteRef": {"key": "platform--shipyard--agent-token"}}]


def test_a_token_ref_the_store_cannot_name_is_refused_where_the_profile_says_it():
    with pytest.raises(ProfileError) as error:
        profile("azure-key-vault", "agent:\n  url: https://shipyard.example.com\n"
                                   "  token_ref: secret://shipyard/agents/Prod#token\n")
    [problem] = error.value.problems
    assert (problem.path, problem.line, problem.column) == ("/agent/token_ref", 8, 14)
    assert problem.message.startswith('token_ref: cluster "lab" keeps secrets in Azure Key Vault')
    assert "write secret://shipyard/agents/prod#token" in problem.message


def test_an_unchecked_profile_with_such_a_token_ref_renders_no_agent():
    unchecked = ClusterProfile.from_dict({
        "name": "lab", "flavor": "kind", "git": {"repo_url": "https://git.example.com/lab.git"},
        "addons": {"external_secrets": {"store": "secrets", "provider": "aws-parameter-store"}},
        "agent": {"url": "https://shipyard.example.com", "token_ref": "secret://aws/agent#token"},
    }, "lab.yaml")
    with pytest.raises(ProfileError) as error:
        render_agent(unchecked, ["storefront"])
    [problem] = error.value.problems
    assert problem.path == "/agent/token_ref" and 'begin with "aws" or "ssm"' in problem.message


# --- the spec's syntax, and what a workspace may read -----------------------------------------------


def test_a_version_is_pinned_after_an_at_sign():
    assert parse_secret_ref("secret://payments/db#password@3") == SecretRef("payments/db", "password", "3")
    assert str(SecretRef("payments/db", "password", "3")) == "secret://payments/db#password@3"
    assert parse_secret_ref("secret://payments/db#password").version is None
    for malformed in ("secret://payments/db#password@", "secret://payments/db#password@1@2",
                      "secret://payments/db@1#password", "secret://payments/db#password\n"):
        with pytest.raises(ValueError, match="malformed secret reference"):
            parse_secret_ref(malformed)
    with pytest.raises(SpecError) as error:
        load_specs(SPEC + "  DB: secret://payments/db#password@\n", "api.yaml")
    [problem] = error.value.problems
    assert (problem.line, problem.column) == (9, 7) and "@<version>" in problem.message


def test_a_pinned_version_reads_what_the_path_permits():
    [spec] = load_specs(SPEC + "  MINE: secret://storefront/db#password@3\n"
                               "  THEIRS: secret://payments/db#password@3\n", "api.yaml")
    storefront = SimpleNamespace(name="storefront", secret_paths=[], cluster=SimpleNamespace(secret_paths=[]))
    assert [p.path for p in secret_problems(spec, storefront)] == ["/env/THEIRS"]


def test_a_provider_outside_the_schema_is_refused_not_guessed():
    with pytest.raises(UnmappableSecretRef, match='provider "keyvault", which is not one of vault, '):
        remote_ref_on(SecretRef("storefront/db", "password"), "keyvault", "lab")
