"""Stored servers and identities, switched like kubectl's contexts.

``shipyard login`` stores each API token it makes as a *context*: a name, the
control plane's URL, the token, and whose token it is (user, role, scope), in
$XDG_CONFIG_HOME/shipyard/credentials.json, readable by the owner only:

    {"current": "ana@shipyard.acme.dev/prod:payments",
     "contexts": {"ana@shipyard.acme.dev/prod:payments": {"url": ..., "token": ..., "user": "ana",
                  "role": "workspace-editor", "cluster": "prod", "workspace": "payments"}, ...}}

The client commands use the current context, or the one ``--context`` (or
SHIPYARD_CONTEXT) names; ``shipyard contexts`` lists them, ``contexts use``
switches. A file written before contexts existed (one ``{"url", "token"}``)
reads as a single context. A token goes only to the server it was made for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click

from cli.exits import EXIT_NOT_FOUND, EXIT_USAGE, Failure

CONTEXT_ENV = "SHIPYARD_CONTEXT"


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "shipyard" / "credentials.json"


@dataclass
class Contexts:
    """What credentials.json holds: the contexts by name, and which one is current."""

    contexts: dict[str, dict] = field(default_factory=dict)
    current: str | None = None

    @classmethod
    def load(cls) -> Contexts:
        path = credentials_path()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise Failure(f"cannot read {path}: {exc}; run `shipyard login` again", EXIT_USAGE) from exc
        if not isinstance(data, dict):
            return cls()
        if "contexts" not in data:  # one token, as stored before contexts
            if not data.get("url") or not data.get("token"):
                return cls()
            name = context_name(data["url"], None)
            return cls({name: {"url": data["url"], "token": data["token"]}}, name)
        contexts = {name: entry for name, entry in (data.get("contexts") or {}).items()
                    if isinstance(entry, dict) and entry.get("url") and entry.get("token")}
        current = data.get("current")
        return cls(contexts, current if current in contexts else None)

    def save(self) -> Path:
        """Write the file readable by the owner only (0600), replacing it atomically."""
        path = credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump({"current": self.current, "contexts": self.contexts}, handle, indent=2)
        os.replace(partial, path)
        return path

    def selected(self, name: str | None = None) -> dict | None:
        """The context a command uses: ``name``, else SHIPYARD_CONTEXT, else the current one."""
        name = name or os.environ.get(CONTEXT_ENV) or None
        if name is None:
            return self.contexts.get(self.current) if self.current else None
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none yet: run `shipyard login`"
            raise Failure(f'no context "{name}"; the stored ones: {known}', EXIT_NOT_FOUND)
        return self.contexts[name]

    def token_for(self, url: str, name: str | None = None) -> str | None:
        """The stored token for ``url``: the selected context's if it is for that server, else the
        first stored for it. A token never goes to another server than its own."""
        chosen = self.selected(name)
        if chosen and chosen["url"] == url:
            return chosen["token"]
        return next((entry["token"] for entry in self.contexts.values() if entry["url"] == url), None)


def context_name(url: str, identity: dict | None) -> str:
    """``user@host[:port]``, then ``/cluster[:workspace]`` for a token scoped below the tenant."""
    host = urlsplit(url).netloc or url
    if not identity:
        return host
    name = f"{identity['user']}@{host}"
    if identity.get("cluster"):
        name += f"/{identity['cluster']}" + (f":{identity['workspace']}" if identity.get("workspace") else "")
    return name


def store(url: str, token: str, identity: dict | None, name: str | None = None) -> tuple[str, Path]:
    """Keep a token as a context (``name``, or one made of whose it is) and make it current."""
    contexts = Contexts.load()
    name = name or context_name(url, identity)
    contexts.contexts[name] = {"url": url, "token": token, **(identity or {})}
    contexts.current = name
    return name, contexts.save()


def selected_name() -> str | None:
    """The context ``--context`` named for this command (click's meta), if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get("shipyard.context") if ctx is not None else None


def _remember_context(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta["shipyard.context"] = value


context_option = click.option(
    "--context", expose_value=False, callback=_remember_context, is_eager=True,
    help=f"The stored context to use (default: the current one; env {CONTEXT_ENV}); see `shipyard contexts`.")


# --- shipyard contexts, shipyard logout -------------------------------------------------------------------------


def _scope(entry: dict) -> str:
    if not entry.get("cluster"):
        return "tenant" if entry.get("role") else "-"
    return entry["cluster"] + (f":{entry['workspace']}" if entry.get("workspace") else "")


@click.group(invoke_without_command=True)
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for scripts.")
@click.pass_context
def contexts(ctx: click.Context, output: str) -> None:
    """List the stored contexts (server and identity), the current one marked *; tokens are never shown."""
    if ctx.invoked_subcommand is not None:
        return
    from cli.output import print_json, print_table

    stored = Contexts.load()
    rows = [{"name": name, "current": name == stored.current, "url": entry["url"], "user": entry.get("user"),
             "role": entry.get("role"), "cluster": entry.get("cluster"), "workspace": entry.get("workspace")}
            for name, entry in sorted(stored.contexts.items())]
    if output == "json":
        print_json({"current": stored.current, "contexts": rows})
        return
    print_table(("CURRENT", "NAME", "URL", "USER", "ROLE", "SCOPE"), (
        ("*" if row["current"] else "", row["name"], row["url"], row["user"] or "-", row["role"] or "-",
         _scope(stored.contexts[row["name"]])) for row in rows))


def _known(stored: Contexts, name: str) -> None:
    if name not in stored.contexts:
        stored.selected(name)  # raises, naming the stored ones


@contexts.command("use")
@click.argument("name")
def use_context(name: str) -> None:
    """Make NAME the current context: the client commands use its server and token."""
    stored = Contexts.load()
    _known(stored, name)
    stored.current = name
    stored.save()
    click.echo(f'switched to context "{name}" ({stored.contexts[name]["url"]})', err=True)


@contexts.command("rename")
@click.argument("old")
@click.argument("new")
def rename_context(old: str, new: str) -> None:
    """Rename the context OLD to NEW."""
    stored = Contexts.load()
    _known(stored, old)
    if new in stored.contexts and new != old:
        raise Failure(f'a context "{new}" exists already; delete it first or pick another name', EXIT_USAGE)
    stored.contexts[new] = stored.contexts.pop(old)
    if stored.current == old:
        stored.current = new
    stored.save()
    click.echo(f'context "{old}" is now "{new}"', err=True)


@contexts.command("delete")
@click.argument("name")
def delete_context(name: str) -> None:
    """Forget the context NAME here; its token stays valid until it expires (`shipyard logout` revokes it)."""
    stored = Contexts.load()
    _known(stored, name)
    del stored.contexts[name]
    if stored.current == name:
        stored.current = None
    stored.save()
    click.echo(f'context "{name}" deleted' + ("; no context is current now" if stored.current is None else ""),
               err=True)
