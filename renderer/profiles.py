"""Cluster profiles: what a target cluster is (flavor, version) and what it runs.

The renderer reads nothing else about a cluster. A profile is YAML validated
against ``schemas/cluster-profile.schema.json``; :class:`ClusterProfile` is the
typed, defaulted view the templates and checks use. Its optional ``agent``
section (:class:`AgentProfile`) says how the Shipyard agent is installed from
the cluster repository's bootstrap.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contract.addons import (ADDON_PROJECTS, OLDEST_RELEASES, PROFILE_ADDONS, RELEASE_CHANGES, Release,
                             ReleaseChange, parse_release, release_text)
from contract.errors import Problem, ProfileError, SpecError
from renderer.kube import supported_kubernetes_versions
from renderer.secret_refs import DEFAULT_PROVIDER, UnmappableSecretRef, remote_ref_on
from renderer.spec import SecretRef, parse_secret_ref, schema_problems
from renderer.yamlio import load_documents

PROFILE_SCHEMA = "cluster-profile.schema.json"
DEFAULT_KUBERNETES_VERSION = "1.33"

ADDONS = PROFILE_ADDONS

DEFAULT_RPS_QUERY = (
    'sum(rate(istio_requests_total{destination_workload_namespace="{namespace}",'
    'destination_workload="{app}",reporter="destination"}[1m]))'
)


AGENT_IMAGE_REPOSITORY = "ghcr.io/shipyard-dev/shipyard-agent"


def default_agent_image() -> str:
    """The agent image of this Shipyard release: the agent speaks the protocol of the control
    plane that renders it, so upgrading Shipyard moves the bootstrap to the matching agent."""
    from importlib import metadata  # here, not at the top: importing it costs a command's start 25 ms

    try:
        version = metadata.version("shipyard")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        version = "latest"
    return f"{AGENT_IMAGE_REPOSITORY}:{version}"


@dataclass(frozen=True)
class AgentProfile:
    """The profile's ``agent`` section: the agent rendered into ``bootstrap/agent/``.

    ``token_secret`` names a Secret (key ``token``) in ``namespace``; it is created
    out of band, or by External Secrets from ``token_ref``. The token itself is
    never in the profile or the repository.
    """

    url: str
    tenant: str = "default"
    namespace: str = "shipyard-system"
    image: str = field(default_factory=default_agent_image)
    token_secret: str = "shipyard-agent-token"
    token_ref: SecretRef | None = None
    # ``resources``: what the agent's memory is sized for (renderer.bootstrap.agent_resources), or
    # the memory itself, and the CPU limit.
    followed_objects: int | None = None
    memory: str | None = None
    cpu: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "AgentProfile":
        given = {k: data[k] for k in ("tenant", "namespace", "image", "token_secret") if k in data}
        resources = data.get("resources") or {}
        return cls(url=data["url"], token_ref=parse_secret_ref(data.get("token_ref")),
                   followed_objects=resources.get("followed_objects"), memory=resources.get("memory"),
                   cpu=resources.get("cpu"), **given)


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    flavor: str
    kubernetes_version: str
    repo_url: str
    branch: str = "main"
    browse_url: str | None = None  # a commit's web page, "{commit}" standing for its id
    base_domain: str | None = None
    ingress: str | None = None
    argocd_namespace: str = "argocd"
    argocd_project: str = "shipyard"
    destination_server: str = "https://kubernetes.default.svc"
    addons: dict[str, dict] = field(default_factory=dict)
    agent: AgentProfile | None = None  # None: no agent in the bootstrap
    downloader_image: str = field(default_factory=default_agent_image)  # runs renderer.artifacts' downloads
    source: str = "<profile>"

    def has(self, addon: str) -> bool:
        return addon in self.addons

    def addon(self, addon: str) -> dict:
        return self.addons.get(addon, {})

    def addon_version(self, addon: str) -> Release | None:
        """The addon's release the profile names ("3.6" is (3, 6)); None: the current release line."""
        return parse_release(self.addon(addon).get("version"))

    def takes(self, change: ReleaseChange) -> bool:
        """Whether the cluster's release of the change's addon has it; a profile naming no release does."""
        version = self.addon_version(change.addon)
        return version is None or version >= change.release

    @property
    def addon_api(self) -> dict[str, str]:
        """What the addons' releases decide in rendered objects, by the change's name (contract.addons
        RELEASE_CHANGES): the ExternalSecret's apiVersion, the CronWorkflow's schedule field."""
        return {change.name: change.after if self.takes(change) else change.before for change in RELEASE_CHANGES}

    @property
    def router(self) -> str | None:
        """How exposed ports are routed: "istio", "gateway_api" or None."""
        if self.ingress:
            return self.ingress
        for candidate in ("istio", "gateway_api"):
            if self.has(candidate):
                return candidate
        return None

    @property
    def digest(self) -> str:
        data = json.dumps(self.__dict__, sort_keys=True, default=str)
        return "sha256:" + hashlib.sha256(data.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict, source: str = "<profile>") -> "ClusterProfile":
        addons = {}
        for name, value in (data.get("addons") or {}).items():
            if value is False:
                continue
            addons[name] = value if isinstance(value, dict) else {}
        argocd = data.get("argocd") or {}
        git = data["git"]
        return cls(
            name=data["name"],
            flavor=data["flavor"],
            kubernetes_version=data.get("kubernetes_version", DEFAULT_KUBERNETES_VERSION),
            repo_url=git["repo_url"],
            branch=git.get("branch", "main"),
            browse_url=git.get("browse_url"),
            base_domain=data.get("base_domain"),
            ingress=data.get("ingress"),
            argocd_namespace=argocd.get("namespace", "argocd"),
            argocd_project=argocd.get("project", "shipyard"),
            destination_server=argocd.get("destination_server", "https://kubernetes.default.svc"),
            addons=addons,
            agent=AgentProfile.from_dict(data["agent"]) if data.get("agent") is not None else None,
            **({"downloader_image": data["artifacts"]["downloader_image"]}
               if "downloader_image" in (data.get("artifacts") or {}) else {}),
            source=source,
        )


def load_profile_text(source: str | bytes, file: str = "<profile>") -> ClusterProfile:
    """Parse and validate one cluster profile; ProfileError lists every problem."""
    try:
        documents = load_documents(source, file)
    except SpecError as exc:
        raise ProfileError(exc.problems) from exc
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        raise ProfileError([Problem(file, 1, 1, "a cluster profile file holds exactly one mapping")])
    doc = documents[0]
    problems = schema_problems(doc, PROFILE_SCHEMA)
    if not problems:
        data: dict[str, Any] = doc.data
        version = data.get("kubernetes_version", DEFAULT_KUBERNETES_VERSION)
        supported = supported_kubernetes_versions()
        if version not in supported:
            problems.append(
                doc.problem(
                    f"Kubernetes {version} is not supported; use one of {', '.join(supported)}",
                    ("kubernetes_version",),
                )
            )
        ingress = data.get("ingress")
        if ingress and ingress not in (data.get("addons") or {}):
            problems.append(doc.problem(f'ingress "{ingress}" needs the {ingress} addon under addons', ("ingress",)))
        problems.extend(_agent_problems(doc, data))
        problems.extend(_url_problems(doc, data))
        problems.extend(_addon_version_problems(doc, data))
    if problems:
        raise ProfileError(problems)
    return ClusterProfile.from_dict(doc.data, source=file)


def _addon_version_problems(doc, data: dict) -> list[Problem]:
    """An addon release older than Shipyard renders for (contract.addons OLDEST_RELEASES), at its version."""
    problems = []
    for name, value in (data.get("addons") or {}).items():
        release = parse_release(value.get("version")) if isinstance(value, dict) else None
        oldest = OLDEST_RELEASES.get(name)
        if release is not None and oldest is not None and release < oldest.release:
            project = ADDON_PROJECTS[name]
            problems.append(doc.problem(
                f'Shipyard renders for {project} {release_text(oldest.release)} and later, not {value["version"]}: '
                f"{oldest.why}; upgrade {project} on the cluster", ("addons", name, "version")))
    return problems


def _agent_problems(doc, data: dict) -> list[Problem]:
    """What the schema cannot say about the ``agent`` section."""
    agent = data.get("agent")
    if agent is None:
        return []
    problems = []
    addons = data.get("addons") or {}
    # The agent's Namespace object is rendered into the bootstrap: it must not take over one of the
    # cluster's own namespaces (ArgoCD's, a gateway's, Kubernetes').
    taken = {(data.get("argocd") or {}).get("namespace", "argocd"), "default"} | {
        addons[router]["gateway"].split("/", 1)[0] for router in ("istio", "gateway_api") if addons.get(router)
    }
    memory = (agent.get("resources") or {}).get("memory")
    if memory is not None and int(memory[:-2]) * (1024 if memory.endswith("Gi") else 1) < 64:
        problems.append(doc.problem(
            f"the agent needs at least 64Mi of memory, not {memory} (the interpreter and the Kubernetes client "
            "alone take about 45 MB)", ("agent", "resources", "memory")))
    namespace = agent.get("namespace", AgentProfile.namespace)
    if namespace in taken or namespace.startswith("kube-"):
        problems.append(doc.problem(
            f'the agent needs a namespace of its own, not "{namespace}"; the default is {AgentProfile.namespace}',
            ("agent", "namespace")))
    if "token_ref" in agent:
        token_ref = None
        try:
            token_ref = parse_secret_ref(agent["token_ref"])
        except ValueError as exc:
            problems.append(doc.problem(f"token_ref: {exc}", ("agent", "token_ref")))
        if "external_secrets" not in addons:
            problems.append(doc.problem(
                f'cluster "{data["name"]}" has no external_secrets addon, which agent.token_ref needs '
                "(or drop token_ref and create the Secret agent.token_secret yourself)",
                ("agent", "token_ref")))
        elif token_ref is not None:  # named as the store names secrets (renderer.secret_refs)
            provider = addons["external_secrets"].get("provider", DEFAULT_PROVIDER)
            try:
                remote_ref_on(token_ref, provider, data["name"])
            except UnmappableSecretRef as exc:
                problems.append(doc.problem(f"token_ref: {exc}", ("agent", "token_ref")))
    return problems


# Every URL a profile holds, with the schemes its reader takes. The control plane connects to
# none of them: they are rendered into the cluster repository for ArgoCD, the agent and KEDA,
# so an in-cluster or loopback address is theirs to reach. What the repository must never hold
# is a credential (a URL's user:password), and no reader takes a local path or file://.
URL_FIELDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("git", "repo_url"): ("https", "http", "ssh"),  # and user@host:path, as ArgoCD takes it
    ("git", "browse_url"): ("https", "http"),  # a link people follow from the dashboard
    ("argocd", "destination_server"): ("https", "http"),
    ("addons", "keda", "prometheus_url"): ("https", "http"),
    ("agent", "url"): ("https", "http"),
}
_SCP_FORM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*@[A-Za-z0-9.-]+:\S+$")


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``url`` cannot stand in a profile, or None."""
    if "ssh" in schemes and "://" not in url and _SCP_FORM.match(url):
        return None  # git@host:org/repo.git
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() not in schemes or not parts.hostname:
        forms = ", ".join(f"{scheme}://host/..." for scheme in schemes)
        scp = " or user@host:path" if "ssh" in schemes else ""
        return f"must be {forms}{scp}; local paths, file:// and other schemes are refused"
    if parts.password is not None or (parts.username is not None and parts.scheme.lower() != "ssh"):
        return ("must not hold credentials (user:password@): the profile is written into the cluster "
                "repository; give the credentials to the reader itself (an ArgoCD repository Secret)")
    return None


def _url_problems(doc, data: dict) -> list[Problem]:
    problems = []
    browse = data["git"].get("browse_url") if isinstance(data.get("git"), dict) else None
    if isinstance(browse, str) and "{commit}" not in browse \
            and url_problem(browse, URL_FIELDS[("git", "browse_url")]) is None:
        problems.append(doc.problem("browse_url must hold {commit} where a commit's id goes, e.g. "
                                    "https://github.com/acme/cluster-demo/commit/{commit}", ("git", "browse_url")))
    for path, schemes in URL_FIELDS.items():
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            reason = url_problem(value, schemes)
            if reason:
                problems.append(doc.problem(f"{path[-1]} {reason}", path))
    return problems


def load_profile(path: str | Path) -> ClusterProfile:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError([Problem(str(path), 0, 0, f"cannot read cluster profile: {exc.strerror}")]) from exc
    return load_profile_text(data, str(path))


__all__ = ["ClusterProfile", "AgentProfile", "default_agent_image", "load_profile", "load_profile_text", "ADDONS",
           "DEFAULT_RPS_QUERY"]
