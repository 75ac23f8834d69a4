"""Deploy specs: load, validate, and the checks a JSON Schema can't express.

A spec file holds one or more YAML documents, each a ``service`` or a ``job``
(field names follow TrueFoundry's manifest format). :func:`load_specs` reports
*every* problem of a file at once, each located at a line and column, and
returns :class:`Spec` objects only when the whole file is valid.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, Iterable

import jsonschema_rs

from contract.errors import Problem, SpecError
from contract.labels import RESERVED_PREFIXES
from renderer.flavors import resource_problems
from renderer.artifacts import MOUNT_ROOT, artifact_problems
from renderer.mounts import mount_problems
from renderer.paths import expand_paths
from renderer.yamlio import Document, load_documents

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SPEC_SCHEMA = "deploy-spec.schema.json"


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret in the cluster's secret store; never its value."""

    path: str  # the secret's path, "/"-separated; what gitops.isolation's path rules match
    key: str  # the key within that secret
    version: str | None = None  # a pinned version (@<version>); None reads the current one

    def __str__(self) -> str:
        pinned = f"@{self.version}" if self.version is not None else ""
        return f"secret://{self.path}#{self.key}{pinned}"


# What each provider makes of path, key and version (and refuses) is renderer.secret_refs.
_NAME = r"[A-Za-z0-9._-]+"
_VERSION = rf"(?:@(?P<version>{_NAME}))?"
_SECRET_RE = re.compile(rf"secret://(?P<path>{_NAME}(?:/{_NAME})*)#(?P<key>{_NAME}){_VERSION}")
_TFY_SECRET_RE = re.compile(rf"tfy-secret://(?P<tenant>{_NAME}):(?P<group>{_NAME}):(?P<key>{_NAME}){_VERSION}")
_SECRET_SCHEMES = ("secret://", "tfy-secret://")


def parse_secret_ref(value: Any) -> SecretRef | None:
    """The secret a value refers to, or None for a plain value.

    ``secret://<path>#<key>`` or ``tfy-secret://<tenant>:<group>:<key>`` (the path
    ``<tenant>/<group>``), either followed by ``@<version>`` to pin a version.
    Raises ValueError for a value that uses a secret scheme but is malformed,
    so a typo never ends up as a literal environment value, and for a path with
    "." or ".." segments, which could climb out of the prefix a workspace may use
    (gitops.isolation).
    """
    if not isinstance(value, str) or not value.startswith(_SECRET_SCHEMES):
        return None
    ref = None
    if match := _SECRET_RE.fullmatch(value):
        ref = SecretRef(match["path"], match["key"], match["version"])
    elif match := _TFY_SECRET_RE.fullmatch(value):
        ref = SecretRef(f"{match['tenant']}/{match['group']}", match["key"], match["version"])
    if ref is not None:
        if any(segment in (".", "..") for segment in ref.path.split("/")):
            raise ValueError(f'secret path "{ref.path}" has a "." or ".." segment; name the secret by its plain path')
        return ref
    raise ValueError(
        "malformed secret reference; write secret://<path>#<key> "
        "(e.g. secret://payments/db#password) or tfy-secret://<tenant>:<group>:<key>, "
        "either followed by @<version> to pin a version"
    )


@dataclass(frozen=True)
class Spec:
    """One validated deploy spec and where it came from."""

    kind: str  # "service" or "job"
    name: str
    cluster: str
    workspace: str
    body: dict = field(repr=False)
    document: Document = field(repr=False, compare=False)

    @property
    def file(self) -> str:
        return self.document.file

    @property
    def key(self) -> str:
        """``<workspace>/<app>``, how the CLI and repository name an app."""
        return f"{self.workspace}/{self.name}"

    @functools.cached_property
    def digest(self) -> str:
        canonical = json.dumps(self.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def problem(self, message: str, path: Iterable = (), key: bool = False) -> Problem:
        return self.document.problem(message, tuple(path), key=key)


@functools.cache
def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


@functools.cache
def _validator(name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(_schema(name))


def compile_schemas() -> None:
    """Compile every schema's validator now rather than on first use."""
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        _validator(path.name)


def schema_problems(doc: Document, schema_name: str, data: Any = None) -> list[Problem]:
    """Every schema violation of a document, in a user's words."""
    schema = _schema(schema_name)
    instance = doc.data if data is None else data
    problems = []
    for error in _validator(schema_name).iter_errors(instance):
        described = _describe(error, doc, schema)
        problems.extend(described if isinstance(described, list) else [described])
    return _drop_implied(_dedupe(problems))


def _drop_implied(problems: list[Problem]) -> list[Problem]:
    """A misspelt field also makes the real one "missing": report only the typo."""
    suggested = set()
    for p in problems:
        if match := re.search(r'did you mean "([^"]+)"', p.message):
            parent = p.path.rsplit("/", 1)[0]
            suggested.add((parent, match.group(1)))
    out = []
    for p in problems:
        match = re.fullmatch(r'missing required field "([^"]+)"', p.message)
        if match and (p.path, match.group(1)) in suggested:
            continue
        out.append(p)
    return out


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.line, p.column, p.message) not in seen:
            seen.add((p.line, p.column, p.message))
            out.append(p)
    return out


def _schema_node(schema: dict, schema_path: list) -> Any:
    node: Any = schema
    for part in schema_path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
    return node


_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "null",
}


def _value_words(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{json.dumps(shown, ensure_ascii=False)} (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


def _describe(error: Any, doc: Document, schema: dict) -> Problem | list[Problem]:
    path = tuple(error.instance_path)
    schema_path = list(error.schema_path)
    keyword = schema_path[-1] if schema_path else ""
    parent = _schema_node(schema, schema_path[:-1])
    details = error.kind.as_dict() if hasattr(error.kind, "as_dict") else {}
    instance = error.instance
    hint = parent.get("x-hint") if isinstance(parent, dict) else None
    field_name = str(path[-1]) if path else "document"

    if keyword in ("additionalProperties", "unevaluatedProperties"):
        unexpected = details.get("unexpected") or []
        known = sorted((parent.get("properties") or {}).keys()) if isinstance(parent, dict) else []
        problems = []
        for name in unexpected:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            suggestion = f'; did you mean "{close[0]}"?' if close else f"; known fields: {', '.join(known)}"
            problems.append(doc.problem(f'unknown field "{name}"{suggestion}', path + (name,), key=True))
        return problems
    if keyword == "required":
        missing = details.get("property", "?")
        return doc.problem(f'missing required field "{missing}"', path)
    if keyword == "type":
        wanted = details.get("types") or []
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in wanted)
        text = f'"{field_name}" must be {words}, not {_value_words(instance)}'
        return doc.problem(f"{text}; {hint}" if hint else text, path)
    if keyword in ("enum", "const"):
        options = details.get("options") or ([details.get("expected_value")] if "expected_value" in details else [])
        options = [o for o in options if o is not None]
        shown = ", ".join(json.dumps(o) for o in options)
        text = f'"{field_name}" must be one of {shown}, not {_value_words(instance)}'
        if isinstance(instance, str):
            close = difflib.get_close_matches(instance, [str(o) for o in options], n=1, cutoff=0.6)
            if close:
                text += f'; did you mean "{close[0]}"?'
        return doc.problem(text, path)
    if "propertyNames" in schema_path:
        inner = details.get("error")
        name = getattr(inner, "instance", None)
        names_schema = _schema_node(schema, schema_path[: schema_path.index("propertyNames") + 1])
        key_hint = names_schema.get("x-hint") if isinstance(names_schema, dict) else None
        if isinstance(name, str):
            text = f'key "{name}" is not allowed'
            return doc.problem(f"{text}: {key_hint}" if key_hint else text, path + (name,), key=True)
    if keyword == "pattern":
        what = f'"{field_name}" value {_value_words(instance)} is not allowed'
        return doc.problem(f"{what}: {hint}" if hint else f"{what}: must match {details.get('pattern')}", path)
    if keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        limit = details.get("limit")
        relation = {
            "minimum": "at least",
            "exclusiveMinimum": "greater than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[keyword]
        text = f'"{field_name}" must be {relation} {limit}, not {instance}'
        return doc.problem(f"{text}; {hint}" if hint else text, path)
    if keyword in ("minLength", "maxLength"):
        limit = details.get("limit")
        relation = "at least" if keyword == "minLength" else "at most"
        return doc.problem(f'"{field_name}" must be {relation} {limit} characters long', path)
    if keyword in ("minItems", "maxItems"):
        limit = details.get("limit")
        relation = "at least" if keyword == "minItems" else "at most"
        return doc.problem(f'"{field_name}" must have {relation} {limit} items', path)
    return doc.problem(f'"{field_name}": {error.message}', path)


# --- checks beyond the schema -------------------------------------------------

# docker/distribution's reference package: a name longer than this is refused by registries
# and container runtimes alike (the schema's pattern holds the rest of the grammar).
MAX_IMAGE_NAME = 255
# What go-digest (containerd, CRI-O, every registry) verifies: the algorithms it knows and the
# length of their lowercase hex; any other digest matches the grammar but pulls nothing.
IMAGE_DIGESTS = {"sha256": 64, "sha384": 96, "sha512": 128}


def image_reference_problem(reference: str) -> str | None:
    """What the schema's reference grammar cannot say is wrong with an image reference, or None."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:  # a tag; a ':' before the last '/' belongs to the registry's port
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    if len(name) > MAX_IMAGE_NAME:
        return (f"the image name (before the tag) is {len(name)} characters long; "
                f"registries accept at most {MAX_IMAGE_NAME}")
    if digest:
        algorithm, _, hex_digits = digest.partition(":")
        length = IMAGE_DIGESTS.get(algorithm)
        if length is None:
            return f'image digest algorithm "{algorithm}" is not one registries verify; use sha256, sha384 or sha512'
        if len(hex_digits) != length or hex_digits != hex_digits.lower():
            return f'a {algorithm} image digest is {length} lowercase hex digits, not "{hex_digits}"'
    return None


def thousandths_problem(field_name: str, value: int | float, finest: str) -> str | None:
    """Why ``value`` (within the schema's bounds) is not a whole number of thousandths, or None.

    Kubernetes holds CPU in millicores (and KEDA a target rate in thousandths): 0.2505 would
    silently become 0.25 or 0.251 on the way, so it is refused, naming both.
    """
    thousandths = Decimal(repr(value)) * 1000  # repr: the shortest decimal that reads back as this float
    if thousandths == thousandths.to_integral_value():
        return None
    below, above = (format((thousandths.to_integral_value(rounding) / 1000).normalize(), "f")
                    for rounding in (ROUND_FLOOR, ROUND_CEILING))
    return f'"{field_name}" {value} is finer than {finest}; use {below} or {above}'


def port_exposed(port: dict) -> bool:
    """Whether a port is routed from outside the cluster: ``expose``, which TrueFoundry defaults to true;
    a port without host stays inside unless it says ``expose: true`` (TrueFoundry needs a host to expose)."""
    return port.get("expose", bool(port.get("host")))


def _port_problems(port: dict) -> list[tuple[str, tuple]]:
    """What is wrong with one port whatever the cluster, as (message, path below the port)."""
    problems = []
    exposed = port_exposed(port)
    if port.get("host") and not exposed:
        problems.append(("host is set but expose is false; drop expose (a port with a host is exposed) or the host",
                         ("host",)))
    if exposed and (port.get("app_protocol") or "http") == "tcp":
        problems.append(('exposing a port needs app_protocol http or grpc; "tcp" ports stay inside the cluster', ("expose",)))
    if exposed and port.get("protocol") == "UDP":
        problems.append(("UDP ports cannot be exposed through the gateway", ("protocol",)))
    if "rewrite_path_to" in port and not exposed:
        problems.append(("rewrite_path_to rewrites the requests of an exposed port's route; this port is not exposed",
                         ("rewrite_path_to",)))
    elif "rewrite_path_to" in port and "path" not in port:
        # TrueFoundry: "This is only applicable if path is given"
        problems.append(("rewrite_path_to replaces the port's path and needs one; set path (e.g. path: /)",
                         ("rewrite_path_to",)))
    auth = port.get("auth") or {}
    if auth.get("type") == "basic_auth":
        problems.append(("basic_auth is refused: its password would be stored and written to git in clear, and "
                         "neither Istio nor the Gateway API checks basic credentials without a gateway-specific "
                         "extension; use jwt_auth with your identity provider", ("auth", "type")))
    elif auth.get("type") == "truefoundry_oauth":
        problems.append(("truefoundry_oauth needs TrueFoundry's own login service, which a Shipyard cluster does not "
                         "run; use jwt_auth with your identity provider", ("auth", "type")))
    elif auth.get("enable_login"):
        problems.append(("enable_login needs an OAuth2 login flow at the gateway; the cluster checks JWTs the client "
                         "sends (Istio RequestAuthentication) but cannot log a browser in; drop enable_login",
                         ("auth", "enable_login")))
    return problems


def _pod_field_problems(body: dict) -> list[tuple[str, tuple]]:
    """What is wrong with probes, mounts and artifacts whatever the cluster, as (message, path) pairs."""
    problems = []
    for field_name in ("liveness_probe", "startup_probe"):
        # Kubernetes, "Configure Liveness, Readiness and Startup Probes": successThreshold "Must be 1 for
        # liveness and startup Probes"
        if body.get(field_name, {}).get("success_threshold", 1) != 1:
            problems.append((f"success_threshold of a {field_name.replace('_', ' ')} must be 1 (Kubernetes restarts or "
                             "starts on the first success); drop it", (field_name, "success_threshold")))
    for index, mount in enumerate(body.get("mounts") or []):
        if mount["type"] == "secret":
            try:
                if parse_secret_ref(mount["secret_fqn"]) is None:
                    raise ValueError("not a secret reference")
            except ValueError as exc:
                problems.append((f"secret_fqn: {exc}", ("mounts", index, "secret_fqn")))
    problems.extend(mount_problems(body, {MOUNT_ROOT: "artifacts_download puts the files it downloads"}))
    problems.extend(artifact_problems(body))
    return problems


def _semantic_problems(doc: Document) -> list[Problem]:
    body = doc.data
    problems: list[Problem] = []
    image = body.get("image") or {}
    if image.get("type") == "build":
        problems.append(
            doc.problem(
                'image type "build" is not supported yet; build the image in CI and use '
                "type: image with its image_uri",
                ("image", "type"),
            )
        )
    elif (wrong := image_reference_problem(image["image_uri"])) is not None:
        problems.append(doc.problem(wrong, ("image", "image_uri")))
    for name, value in (body.get("env") or {}).items():
        try:
            parse_secret_ref(value)
        except ValueError as exc:
            problems.append(doc.problem(f'env "{name}": {exc}', ("env", name)))
    resources = body.get("resources") or {}
    finest = "a millicore (0.001), the least Kubernetes counts CPU in"
    for cpu_field in ("cpu_request", "cpu_limit"):
        if cpu_field in resources and (wrong := thousandths_problem(cpu_field, resources[cpu_field], finest)):
            problems.append(doc.problem(wrong, ("resources", cpu_field)))
    for kind in ("cpu", "memory", "ephemeral_storage"):
        request, limit = resources.get(f"{kind}_request"), resources.get(f"{kind}_limit")
        if request is not None and limit is not None and request > limit:
            problems.append(
                doc.problem(f"{kind}_request ({request}) is above {kind}_limit ({limit}); lower the request or raise the limit",
                            ("resources", f"{kind}_request"))
            )
    # devices, legacy gpu_count, /dev/shm: what holds on every flavor (the rest is renderer.flavors.place's)
    problems.extend(doc.problem(message, path) for message, path in resource_problems(resources))
    seen_ports: dict[int, int] = {}
    for index, port in enumerate(body.get("ports") or []):
        number = port.get("port")
        if number in seen_ports:
            problems.append(doc.problem(f"port {number} is listed twice (also at ports/{seen_ports[number]})", ("ports", index, "port")))
        seen_ports.setdefault(number, index)
        problems.extend(doc.problem(message, ("ports", index, *path)) for message, path in _port_problems(port))
    replicas = body.get("replicas")
    if isinstance(replicas, dict):
        if replicas.get("min_replicas", 1) > replicas["max_replicas"]:
            problems.append(doc.problem(f"min_replicas ({replicas.get('min_replicas', 1)}) is above max_replicas ({replicas['max_replicas']})",
                                        ("replicas", "min_replicas" if "min_replicas" in replicas else "max_replicas")))
        metrics = replicas.get("metrics")
        metrics = metrics if isinstance(metrics, list) else [metrics] if metrics else []
        kinds = [m.get("type") for m in metrics]
        listed = isinstance(replicas.get("metrics"), list)
        for index, metric in enumerate(metrics):
            finest = "a thousandth (0.001), the least KEDA counts a target rate in"
            if metric["type"] == "rps" and (wrong := thousandths_problem("value", metric["value"], finest)):
                problems.append(doc.problem(wrong, ("replicas", "metrics", *((index,) if listed else ()), "value")))
        for kind in set(kinds):
            if kinds.count(kind) > 1 and kind != "cron":
                problems.append(doc.problem(f'autoscaling metric "{kind}" is listed more than once', ("replicas", "metrics")))
    strategy = body.get("rollout_strategy") or {}
    if strategy.get("type") == "canary":
        weights = [step["weight_percentage"] for step in strategy.get("steps", [])]
        if weights != sorted(weights):
            problems.append(doc.problem("canary step weights must not decrease", ("rollout_strategy", "steps")))
    metrics_endpoint = body.get("metrics")
    if metrics_endpoint and metrics_endpoint["port"] in seen_ports:
        port = body["ports"][seen_ports[metrics_endpoint["port"]]]
        if port_exposed(port):
            problems.append(doc.problem("the metrics port must not be exposed outside the cluster", ("metrics", "port")))
    workspace = body["workspace_fqn"].split(":", 1)[1]
    if workspace == "default" or workspace.startswith("kube-"):
        problems.append(doc.problem(
            f'workspace "{workspace}" is a Kubernetes system namespace; use a workspace of its own', ("workspace_fqn",)))
    trigger = body.get("trigger") or {}
    names = [p.get("name") for p in body.get("params") or []]
    # runs nobody starts by hand take every param's default
    unattended = ("scheduled runs have" if trigger.get("type") == "scheduled"
                  else "the run trigger_on_deploy starts has" if body.get("trigger_on_deploy") else None)
    if unattended:
        for index, param in enumerate(body.get("params") or []):
            if "default" not in param:
                problems.append(doc.problem(
                    f'param "{param["name"]}" needs a default: {unattended} nobody to pass it', ("params", index)))
    for index, name in enumerate(names):
        if names.index(name) != index:
            problems.append(doc.problem(f'param "{name}" is declared twice', ("params", index, "name")))
    if "kustomize" in body:
        problems.append(doc.problem(
            "kustomize is not supported: Shipyard commits only objects it renders from the spec and validates, "
            "so it applies no patches or extra manifests; express the change with spec fields, or deploy the "
            "extra objects as their own app", ("kustomize",), key=True))
    problems.extend(doc.problem(message, path) for message, path in _pod_field_problems(body))
    user_labels = body.get("labels") or {}
    for label in user_labels:
        if label.startswith(RESERVED_PREFIXES):
            problems.append(doc.problem(f'label "{label}" is set by Shipyard; choose a key outside '
                                        f'{" and ".join(RESERVED_PREFIXES)}', ("labels", label), key=True))
    return problems


def _to_spec(doc: Document) -> Spec:
    cluster, workspace = doc.data["workspace_fqn"].split(":", 1)
    return Spec(doc.data["type"], doc.data["name"], cluster, workspace, doc.data, doc)


# Mappings whose null values mean something of their own: an env value of null is an empty value
# (pod.env_text), and kustomize holds Kubernetes patches, where null deletes a field.
_NULLS_KEPT = frozenset({"env", "kustomize"})


def without_nulls(data: Any) -> Any:
    """``data`` with every null-valued key of its mappings dropped, as if never written.

    TrueFoundry exports write ``null`` for each optional field left unset (``docker_registry: null``,
    ``node: null``); the schema and the renderer then see the spec as if the key were absent. Only
    mapping keys go (list items stay, so the paths of everything left, and so the line and column
    of a problem, are those of the file), and a spec without nulls is returned equal, so its digest
    does not change. The top-level mappings of ``_NULLS_KEPT`` keep their entries.
    """
    def strip(node: Any, keep: bool) -> Any:
        if isinstance(node, dict):
            if keep:
                return node
            return {k: strip(v, k in _NULLS_KEPT and node is data) for k, v in node.items() if v is not None}
        if isinstance(node, list):
            return [strip(item, False) for item in node]
        return node

    return strip(data, False)


def validate_documents(documents: list[Document]) -> tuple[list[Spec], list[Problem]]:
    """Schema + semantic checks for already parsed documents (null-valued keys dropped first: ``without_nulls``)."""
    specs: list[Spec] = []
    problems: list[Problem] = []
    for doc in documents:
        if not isinstance(doc.data, dict):
            problems.append(doc.problem("a deploy spec must be a mapping with type, name, image and workspace_fqn"))
            continue
        doc.data = without_nulls(doc.data)
        found = schema_problems(doc, SPEC_SCHEMA)
        if not found:
            found = _semantic_problems(doc)
        if found:
            problems.extend(found)
        else:
            specs.append(_to_spec(doc))
    return specs, problems


def load_specs(source: str | bytes, file: str = "<input>") -> list[Spec]:
    """Every spec of one file, or SpecError with every problem in it."""
    documents = load_documents(source, file)
    if not documents:
        raise SpecError([Problem(file, 0, 0, "file holds no deploy spec")])
    specs, problems = validate_documents(documents)
    problems.extend(duplicate_problems(specs))
    if problems:
        raise SpecError(problems)
    return specs


def duplicate_problems(specs: list[Spec]) -> list[Problem]:
    """Two specs for the same app of the same cluster would overwrite each other."""
    first: dict[tuple[str, str, str], Spec] = {}
    problems = []
    for spec in specs:
        key = (spec.cluster, spec.workspace, spec.name)
        if key in first:
            other = first[key]
            problems.append(
                spec.problem(
                    f'app "{spec.key}" is also defined at {other.file}:{other.document.line}; '
                    "names must be unique within a workspace",
                    ("name",),
                )
            )
        else:
            first[key] = spec
    return problems


def load_spec_files(paths: Iterable[str | Path]) -> list[Spec]:
    """Specs of several files (directories are searched for *.yaml/*.yml)."""
    specs: list[Spec] = []
    problems: list[Problem] = []
    for path in expand_paths(paths):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            problems.append(Problem(str(path), 0, 0, f"cannot read file: {exc.strerror}"))
            continue
        try:
            specs.extend(load_specs(data, str(path)))
        except SpecError as exc:
            problems.extend(exc.problems)
    problems.extend(duplicate_problems(specs))
    if problems:
        raise SpecError(problems)
    return specs


__all__ = [
    "compile_schemas",
    "port_exposed",
    "Spec",
    "SecretRef",
    "parse_secret_ref",
    "load_specs",
    "load_spec_files",
    "validate_documents",
    "schema_problems",
    "duplicate_problems",
]
