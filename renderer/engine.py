"""The Jinja engine every renderer goes through, and the one place a template becomes an object.

Every value reaches template text through the ``y`` filter (a serialized YAML
flow node); the environment's ``finalize`` guard (``_require_serialized``)
refuses anything printed without it, so no user string can become YAML
structure. Each template's output is parsed back, must be exactly one
document, and is validated against the schemas the caller hands in
(:class:`~renderer.kube.KubeSchemas`). Pure: templates and values in, one
object out.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from contract.errors import RenderError
from renderer.kube import CORE_ONLY, KubeSchemas
from renderer.profiles import DEFAULT_KUBERNETES_VERSION
from renderer.spec import compile_schemas
from renderer.manifest_yaml import flow, parse_rendered

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def _serialized(value: Any) -> Markup:
    return Markup(flow(value))


def _require_serialized(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    raise RenderError(
        f"template printed a raw value ({type(value).__name__}); pass it through the 'y' filter"
    )


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between processes: compiling all of them cost every command-line
    render or apply 0.12 s. Jinja's own per-user directory (made 0700, its owner checked, so no other
    user can put code in it), each entry keyed by the template's source; none where it cannot be made."""
    try:
        return jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):
        return None


@functools.cache
def environment(template_dir: str = str(TEMPLATE_DIR)) -> jinja2.Environment:
    env = jinja2.Environment(
        bytecode_cache=_bytecode_cache(),
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        finalize=_require_serialized,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["y"] = _serialized
    return env


_TEMPLATE_KIND = re.compile(r"^apiVersion: (\S+)\s*\nkind: (\w+)", re.MULTILINE)


def warm_up(schemas: KubeSchemas = CORE_ONLY, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> None:
    """Compile now what renders would compile on first use: every template, the spec and
    profile schemas, and the validator of every kind the templates produce."""
    env = environment()
    for name in env.list_templates(filter_func=lambda n: n.endswith(".j2")):
        template = env.get_template(name)
        for api_version, kind in _TEMPLATE_KIND.findall(Path(template.filename).read_text()):
            schemas.validator_for(kubernetes_version, api_version, kind)
    compile_schemas()


def render_template(name: str, context: dict, kubernetes_version: str, schemas: KubeSchemas = CORE_ONLY) -> dict:
    """Render one template into exactly one Kubernetes object, validated against ``schemas``."""
    try:
        text = environment().get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}") from exc
    try:
        documents = parse_rendered(text)
    except Exception as exc:  # libyaml's errors have no common base worth naming
        raise RenderError(f"template {name} produced invalid YAML: {exc}") from exc
    if len(documents) != 1:
        raise RenderError(f"template {name} produced {len(documents)} documents instead of one")
    obj = documents[0]
    schemas.validate(obj, kubernetes_version, where=f"template {name}")
    return obj


__all__ = ["TEMPLATE_DIR", "environment", "render_template", "warm_up"]
