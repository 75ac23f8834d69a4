"""Spec repositories: ``shipyard repos`` and ``shipyard repo ...``, through /api/v1/spec-repos.

==================================================  ==========================================
command                                             API
==================================================  ==========================================
repos                                               GET /spec-repos
repo register NAME URL                              POST /spec-repos
repo status NAME                                    GET /spec-repos/<name>
repo sync NAME [--whole]                            POST /spec-repos/<name>/sync
repo delete NAME                                    DELETE /spec-repos/<name>
==================================================  ==========================================

A spec repository deploys as itself: it deploys nowhere until a role binding names it
(``shipyard bindings create`` is for users and groups; POST /role-bindings with
``subject_kind`` "repo" for a repository). Its password or token is never a flag: it is read
from stdin's first line (``--password-stdin``), as ``docker login`` reads it; an ssh key and its
known hosts are read from files. The webhook secret is printed on stdout when the repository is
registered, this once; Shipyard never shows it again.

A sync's problems are printed as FILE:LINE:COL: message, the spec file's own lines, and its
exit code tells a script what happened (``repo sync --help``). Where its https token allows, a
sync also posts a commit status on the commit it read (``--commit-status``: auto, the provider
of its webhook or host; off; or a provider); ``repo status`` shows where they go and what each
sync's came to.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import click

from cli.client import api_options, client
from cli.exits import EXIT_CODES_HELP, EXIT_INVALID, EXIT_REPO
from cli.output import note, print_json, print_table, say
from cli.prompts import confirm, yes_option

SYNC_EXITS = ("\b\nExit codes of a sync:\n"
              "  0  deployed, or nothing to deploy\n"
              "  1  a spec file had problems (FILE:LINE:COL: message); the other files were deployed\n"
              "  3  the repository could not be fetched, or its history was rewritten (sync it --whole)\n"
              "  other codes mean what they mean for every command (shipyard --help)")


def _repo_path(name: str) -> str:
    return f"/api/v1/spec-repos/{quote(name, safe='')}"


def _time(value: str | None, missing: str = "-") -> str:
    return value[:19] if value else missing


def _where(binding: dict) -> str:
    if binding.get("workspace"):
        return f"{binding['cluster']}:{binding['workspace']}"
    return binding.get("cluster") or "(tenant)"


def _synced(repo: dict) -> str:
    if not repo.get("synced_commit"):
        return "never"
    return f"{repo['synced_commit'][:12]} {_time(repo.get('synced_at'))}"


def problem_lines(run: dict) -> list[str]:
    """A sync's problems, FILE:LINE:COL: message (one that is no file's, the fetch's say, as it is)."""
    return [f"{p['file']}:{p['line']}:{p['column']}: {p['message']}" if p.get("file") else p["message"]
            for p in run.get("problems") or []]


def _statuses_to(repo: dict) -> str:
    """Where the repository's commit statuses go: the provider, with the setting when that is auto."""
    setting, provider = repo.get("commit_status") or "auto", repo.get("commit_status_provider")
    if setting == "off":
        return "off"
    return f"{provider or 'none'} (auto)" if setting == "auto" else setting


def _status_words(run: dict) -> str:
    """What came of a sync's commit status: "failure posted", "success not posted", or "-" for none."""
    status = run.get("commit_status")
    if not status:
        return "-"
    return f"{status['state']} {'not posted' if status['outcome'] == 'failed' else status['outcome']}"


def status_lines(run: dict) -> list[str]:
    """Why a sync's commit status was not posted, when it was not."""
    status = run.get("commit_status")
    if not status or status["outcome"] == "posted":
        return []
    return [f"commit status {status['state']} on {status['provider']} {status['outcome']}: {status['detail']}"]


def _version_words(run: dict) -> str:
    made = [v for v in run.get("versions") or [] if not v.get("unchanged")]
    return ", ".join(f"{v['app']} v{v['number']} ({v['action']})" for v in made) or "-"


# --- shipyard repos -----------------------------------------------------------------------------------------


@click.command("repos", epilog=EXIT_CODES_HELP)
@api_options
def repos(url, token, output: str) -> None:
    """List the spec repositories: where each deploys from, and how its last sync went."""
    found = client(url, token, output).call("GET", "/api/v1/spec-repos")["spec_repos"]
    if output == "json":
        print_json({"spec_repos": found})
        return
    print_table(("NAME", "URL", "BRANCH", "STATE", "SYNCED", "COMMIT STATUSES", "LAST ERROR"), (
        (r["name"], r["url"], r["branch"], r["state"], _synced(r), _statuses_to(r), r.get("last_error") or "-")
        for r in found))


# --- shipyard repo ... --------------------------------------------------------------------------------------


@click.group("repo", epilog=EXIT_CODES_HELP)
def repo_group() -> None:
    """Register a spec repository, show one, sync it now, or delete it (`shipyard repos` lists them)."""


def _credentials(username: str | None, password_stdin: bool, password_file: str | None, ssh_key: Path | None,
                 ssh_key_file: str | None, known_hosts: Path | None) -> dict | None:
    https, ssh = (username or password_stdin or password_file), (ssh_key or ssh_key_file or known_hosts)
    if https and ssh:
        raise click.UsageError("give --username with --password-stdin or --password-file (https), or --ssh-key or "
                               "--ssh-key-file with --known-hosts (ssh), not both")
    if password_stdin and password_file:
        raise click.UsageError("give --password-stdin or --password-file, not both")
    if ssh_key and ssh_key_file:
        raise click.UsageError("give --ssh-key or --ssh-key-file, not both")
    if (password_stdin or password_file) and not username:
        raise click.UsageError("a password or token needs --username (for a token: the name its server expects)")
    if ssh and not ((ssh_key or ssh_key_file) and known_hosts):
        raise click.UsageError("an ssh repository needs --ssh-key (or --ssh-key-file) and --known-hosts")
    if ssh:
        key = {"ssh_key": ssh_key.read_text()} if ssh_key else {"ssh_key_file": ssh_key_file}
        return {**key, "known_hosts": known_hosts.read_text()}
    if password_file:
        return {"username": username, "password_file": password_file}
    if username:
        password = sys.stdin.readline().rstrip("\r\n") if password_stdin else ""
        return {"username": username, "password": password}
    return None


@repo_group.command("register", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.argument("repo_url", metavar="URL")
@click.option("--branch", default="main", show_default=True, help="The branch to deploy from.")
@click.option("--glob", "globs", multiple=True, metavar="GLOB",
              help="A path glob of the spec files (repeatable; default: every .yaml and .yml file).")
@click.option("--prune", is_flag=True, help="A deleted spec file deletes its apps (off by default).")
@click.option("--username", help="https: the user name (for a token, what its server expects).")
@click.option("--password-stdin", is_flag=True, help="https: read the password or token from stdin's first line.")
@click.option("--password-file", metavar="NAME",
              help="https: the token is in the server's credential file NAME (CREDENTIAL_FILES_DIR/<tenant>/NAME), "
                   "read at each fetch.")
@click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ssh: the private key's file.")
@click.option("--ssh-key-file", metavar="NAME",
              help="ssh: the private key is in the server's credential file NAME, read at each fetch.")
@click.option("--known-hosts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ssh: the server's host key lines (as ssh-keyscan prints them), pinned.")
@click.option("--commit-status", default="auto", show_default=True, metavar="auto|off|PROVIDER",
              help="Where each sync posts a commit status, with the https token: auto (the provider of the "
                   "repository's webhook, or of its host), off, or github, gitlab, gitea, bitbucket-cloud, "
                   "bitbucket-server.")
@api_options
def register(name: str, repo_url: str, branch: str, globs: tuple[str, ...], prune: bool, username: str | None,
             password_stdin: bool, password_file: str | None, ssh_key: Path | None, ssh_key_file: str | None,
             known_hosts: Path | None, commit_status: str, url, token, output: str) -> None:
    """Register the spec repository NAME at URL (https or ssh); it deploys once a role binding names it.

    The webhook secret is printed on stdout, this once: give it and the webhook URL to
    the git host's push webhook.
    """
    api = client(url, token, output)  # a missing login fails before stdin is read
    body = {"name": name, "url": repo_url, "branch": branch, "prune": prune, "commit_status": commit_status,
            "credentials": _credentials(username, password_stdin, password_file, ssh_key, ssh_key_file, known_hosts)}
    if globs:
        body["globs"] = list(globs)
    created = api.call("POST", "/api/v1/spec-repos", json={k: v for k, v in body.items() if v is not None})
    if output == "json":
        print_json(created)
        return
    click.echo(created["webhook_secret"])
    say(f"spec repository {name} ({created['url']}, branch {created['branch']})", label="registered")
    say(f"webhook URL: {created['webhook_url']}")
    note(name, "the webhook secret above is shown only this once; it deploys nowhere until a role binding "
               "names it (POST /api/v1/role-bindings with subject_kind repo)")


@repo_group.command("status", epilog=EXIT_CODES_HELP)
@click.argument("name")
@api_options
def status(name: str, url, token, output: str) -> None:
    """Show spec repository NAME: its settings, where it may deploy, and its last syncs with their problems."""
    repo = client(url, token, output).call("GET", _repo_path(name))
    if output == "json":
        print_json(repo)
        return
    bindings = ", ".join(f"{b['role']} on {_where(b)}" for b in repo["bindings"]) or "none: it deploys nowhere"
    print_table(("", ""), (
        ("repository", repo["name"]), ("url", repo["url"]), ("branch", repo["branch"]),
        ("globs", ", ".join(repo["globs"])), ("prune", "yes" if repo["prune"] else "no"),
        ("credentials", repo.get("auth") or "none"), ("commit statuses", _statuses_to(repo)),
        ("state", repo["state"]), ("synced", _synced(repo)),
        ("last error", repo.get("last_error") or "-"), ("bindings", bindings),
    ), header=False)
    if not repo["syncs"]:
        say(f"no syncs yet: shipyard repo sync {name}")
        return
    click.echo()
    print_table(("SYNC", "STARTED", "TRIGGER", "STATE", "COMMIT", "COMMIT STATUS", "VERSIONS"), (
        (str(s["id"]), _time(s["started_at"]), s["trigger"], s["state"], (s.get("new") or "-")[:12],
         _status_words(s), _version_words(s)) for s in repo["syncs"]))
    for run in repo["syncs"]:
        for line in problem_lines(run) + status_lines(run):
            click.echo(f"sync {run['id']}: {line}")


def _sync_exit(run: dict) -> int | None:
    """What a sync's answer means for the exit code (SYNC_EXITS); None: it went well."""
    if run["state"] == "refused" or (run["state"] == "failed" and not run.get("new")):
        return EXIT_REPO
    if run.get("problems"):
        return EXIT_INVALID
    return None


@repo_group.command("sync", epilog=SYNC_EXITS)
@click.argument("name")
@click.option("--whole", is_flag=True, help="Deploy every spec file of the branch's tip, not only those changed "
                                            "since the commit last synced (also after a rewritten history).")
@api_options
def sync(name: str, whole: bool, url, token, output: str) -> None:
    """Sync spec repository NAME now: fetch its branch and deploy the spec files that changed."""
    run = client(url, token, output).call("POST", f"{_repo_path(name)}/sync", json={"whole": whole})
    exit_code = _sync_exit(run)
    if output == "json":
        print_json(run)
    else:
        for line in problem_lines(run) + status_lines(run):
            click.echo(line, err=True)
        commit = (run.get("new") or "")[:12] or "-"
        say(f"{name} at {commit}: {_version_words(run)}", label=run["state"],
            colour="green" if exit_code is None else "red")
    if exit_code is not None:
        sys.exit(exit_code)


@repo_group.command("delete", epilog=EXIT_CODES_HELP)
@click.argument("name")
@yes_option
@api_options
def delete(name: str, yes: bool, url, token, output: str) -> None:
    """Delete spec repository NAME: Shipyard forgets it and its role bindings; the apps it deployed stay."""
    api = client(url, token, output)
    api.call("GET", _repo_path(name))
    confirm(f"delete spec repository {name}", "Its role bindings go with it; the apps it deployed keep running.",
            yes, output)
    api.call("DELETE", _repo_path(name))
    if output == "json":
        print_json({"ok": True, "deleted": name})
        return
    say(f"spec repository {name}; the apps it deployed stay", label="deleted")


__all__ = ["repos", "repo_group", "problem_lines", "status_lines"]
