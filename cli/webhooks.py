"""Status webhooks: ``shipyard webhooks`` and ``shipyard webhook ...``, through /api/v1/webhooks.

==================================================  ==========================================
command                                             API
==================================================  ==========================================
webhooks                                            GET /webhooks
webhook create NAME URL --event E...                POST /webhooks (its secret shown once)
webhook show NAME                                   GET /webhooks/<name>
webhook update NAME                                 PATCH /webhooks/<name>
webhook delete NAME                                 DELETE /webhooks/<name>
webhook rotate-secret NAME [--overlap 24h]          POST /webhooks/<name>/rotate-secret (shown once)
webhook deliveries NAME [--limit N] [--before ID]   GET /webhooks/<name>/deliveries
webhook redeliver NAME DELIVERY_ID                  POST .../deliveries/<id>/redeliver
webhook test NAME                                   POST /webhooks/<name>/test
==================================================  ==========================================

A subscription sends the events it names, of the tenant, a cluster, a workspace or one app,
to a receiver's URL, in Shipyard's JSON or as a Slack or Microsoft Teams message. An incoming
webhook's URL is itself the credential (Slack's and Teams' are), and shells keep arguments in
their history: ``--url-stdin`` reads it from stdin's first line instead (asked without echo on
a terminal), as ``docker login`` reads a password. The server shows a URL only by its scheme,
host and first path segment.

The signing secret (``whsec_...``, Standard Webhooks) is printed on stdout when the
subscription is made and when it is rotated, this once each; Shipyard never shows it again.
During a rotation's overlap both secrets sign each delivery, so receivers can move over.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import click

from cli.client import api_options, client
from cli.exits import EXIT_CODES_HELP, EXIT_USAGE, Failure
from cli.output import note, print_json, print_table, say
from cli.prompts import confirm, read_password, yes_option

# What a subscription may hear of and how it is written, as gitops.webhooks names them (a test holds
# the two to each other); the server checks them again.
EVENT_TYPES = ("version.committed", "version.synced", "version.healthy", "version.degraded", "version.sync_failed",
               "version.rolled_back", "version.promoted", "run.succeeded", "run.failed", "cluster.offline",
               "cluster.online")
FORMATS = ("shipyard", "slack", "teams")
RECENT = 20  # deliveries a page shows unless --limit says


def _webhook_path(name: str) -> str:
    return f"/api/v1/webhooks/{quote(name, safe='')}"


def _time(value: str | None, missing: str = "-") -> str:
    return value[:19] if value else missing


def scope_words(subscription: dict) -> str:
    """Where a subscription listens, as people write it: CLUSTER:WORKSPACE/APP, CLUSTER:WORKSPACE, CLUSTER,
    or the tenant."""
    if subscription.get("app"):
        return f"{subscription['cluster']}:{subscription['workspace']}/{subscription['app']}"
    if subscription.get("workspace"):
        return f"{subscription['cluster']}:{subscription['workspace']}"
    return subscription.get("cluster") or "(tenant)"


def _state_words(subscription: dict) -> str:
    if subscription["state"] == "paused":
        return "paused"
    return "failing" if subscription.get("failing_since") else subscription["state"]


def _answer(delivery: dict) -> str:
    """What the receiver last answered: its status code, or why there was no answer."""
    if delivery.get("status_code"):
        return str(delivery["status_code"])
    return delivery.get("error") or "-"


def _duration(delivery: dict) -> str:
    return "-" if delivery.get("duration_ms") is None else f"{delivery['duration_ms']} ms"


def _print_deliveries(deliveries: list[dict]) -> None:
    print_table(("ID", "EVENT", "KEY", "STATE", "ATTEMPTS", "LAST CODE", "DURATION", "WHEN"), (
        (str(d["id"]), d["event"]["type"], d["event"]["key"], d["state"], str(d["attempts"]), _answer(d),
         _duration(d), _time(d.get("delivered_at") or d.get("next_attempt_at") or d["created_at"]))
        for d in deliveries))


def _events(events: tuple[str, ...]) -> list[str]:
    """The --event values, each given once or comma-separated, in the order given and without repeats."""
    chosen = [event.strip() for given in events for event in given.split(",") if event.strip()]
    unknown = [event for event in chosen if event not in EVENT_TYPES]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: the events are {', '.join(EVENT_TYPES)}",
                                 param_hint="--event")
    return list(dict.fromkeys(chosen))


def _receiver_url(given: str | None, from_stdin: bool, option: str, output: str) -> str | None:
    """The receiver's URL, from the command line or (``from_stdin``) stdin's first line; None: not given."""
    if given and from_stdin:
        raise click.UsageError(f"give the receiver's URL as {option} or with --url-stdin, not both")
    if not from_stdin:
        return given
    url = read_password("Receiver URL").strip()
    if not url:
        raise Failure("no receiver URL on stdin (pipe it in as the first line)", EXIT_USAGE, output=output)
    return url


class Overlap(click.ParamType):
    """How long the old secret keeps signing after a rotation: 0 (not at all), 90s, 30m, 24h or 7d."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    _FORM = re.compile(r"^([0-9]{1,7})([smhd]?)$")

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        match = self._FORM.match(str(value).strip().lower())
        if match is None:
            self.fail(f"{value!r} is not a duration such as 0, 90s, 30m, 24h or 7d", param, ctx)
        number, unit = match.groups()
        return int(number) * self._UNITS[unit or "s"]


# --- shipyard webhooks --------------------------------------------------------------------------------------


@click.command("webhooks", epilog=EXIT_CODES_HELP)
@api_options
def webhooks(url, token, output: str) -> None:
    """List the status webhooks you may read: where each sends which events, and whether it is failing."""
    found = client(url, token, output).call("GET", "/api/v1/webhooks")["webhooks"]
    if output == "json":
        print_json({"webhooks": found})
        return
    print_table(("NAME", "URL", "SCOPE", "FORMAT", "STATE", "EVENTS"), (
        (w["name"], w["url"], scope_words(w), w["format"], _state_words(w), ",".join(w["events"]))
        for w in found))
    for paused in (w for w in found if w["state"] == "paused"):
        note(paused["name"], f"paused: {paused.get('paused_reason') or 'no reason given'}; "
                             f"shipyard webhook update {paused['name']} --resume")


# --- shipyard webhook ... -----------------------------------------------------------------------------------


@click.group("webhook", epilog=EXIT_CODES_HELP)
def webhook_group() -> None:
    """Subscribe a receiver to status events, show one, change it, rotate its secret, or read its deliveries
    (`shipyard webhooks` lists them)."""


def event_option(command):
    return click.option(
        "--event", "events", multiple=True, metavar="EVENT",
        help=f"An event to send (repeatable, or comma-separated): {', '.join(EVENT_TYPES)}.")(command)


@webhook_group.command("create", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.argument("receiver", metavar="[URL]", required=False)
@click.option("--url-stdin", is_flag=True, help="Read the receiver's URL from stdin's first line (a Slack or Teams "
                                                "URL is a secret, which shell history would keep).")
@event_option
@click.option("--format", "message_format", type=click.Choice(FORMATS), default="shipyard", show_default=True,
              help="Shipyard's JSON (schemas/webhook-event.schema.json), or a Slack or Teams message.")
@click.option("--cluster", metavar="NAME", help="Only this cluster's events (default: the whole tenant's).")
@click.option("--workspace", metavar="NAME", help="Only this workspace's events (with --cluster).")
@click.option("--app", metavar="NAME", help="Only this app's events (with --cluster and --workspace).")
@click.option("--allow-host", metavar="HOST",
              help="The URL's host may resolve to a private or loopback address, or use http (tenant-admins only).")
@api_options
def create(name: str, receiver: str | None, url_stdin: bool, events: tuple[str, ...], message_format: str,
           cluster: str | None, workspace: str | None, app: str | None, allow_host: str | None, url, token,
           output: str) -> None:
    """Send the events --event names to URL as webhook NAME, signed; its secret is printed on stdout, once.

    \b
    shipyard webhook create deploys https://ci.example.com/hooks/shipyard --event version.healthy \\
        --event version.degraded --cluster prod
    shipyard webhook create team-chat --url-stdin --format slack --event version.degraded < slack-url.txt
    """
    if workspace and not cluster:
        raise click.UsageError("--workspace needs --cluster: a workspace is CLUSTER:WORKSPACE")
    if app and not workspace:
        raise click.UsageError("--app needs --cluster and --workspace: an app is CLUSTER:WORKSPACE/APP")
    if not events:
        raise click.UsageError(f"name the events to send with --event: {', '.join(EVENT_TYPES)}")
    chosen = _events(events)
    api = client(url, token, output)  # a missing login fails before stdin is read
    receiver = _receiver_url(receiver, url_stdin, "URL", output)
    if receiver is None:
        raise click.UsageError("give the receiver's URL, or --url-stdin to read it from stdin")
    body = {"name": name, "url": receiver, "events": chosen, "format": message_format, "cluster": cluster,
            "workspace": workspace, "app": app, "allowed_host": allow_host}
    created = api.call("POST", "/api/v1/webhooks", json={k: v for k, v in body.items() if v is not None})
    if output == "json":
        print_json(created)
        return
    click.echo(created["secret"])
    say(f"webhook {name}: {', '.join(created['events'])} of {scope_words(created)} to {created['url']} "
        f"({created['format']})", label="created")
    note(name, "the signing secret above is shown only this once; `shipyard webhook test "
               f"{name}` sends a test event")


@webhook_group.command("show", epilog=EXIT_CODES_HELP)
@click.argument("name")
@api_options
def show(name: str, url, token, output: str) -> None:
    """Show webhook NAME: its settings, its state (why it is paused) and its last deliveries."""
    found = client(url, token, output).call("GET", _webhook_path(name))
    if output == "json":
        print_json(found)
        return
    rows = [("webhook", found["name"]), ("url", found["url"]), ("scope", scope_words(found)),
            ("events", ", ".join(found["events"])), ("format", found["format"]),
            ("allowed host", found.get("allowed_host") or "-"), ("state", _state_words(found))]
    if found["state"] == "paused":
        rows.append(("paused because", found.get("paused_reason") or "-"))
    if found.get("failing_since"):
        rows.append(("failing since", _time(found["failing_since"])))
    if found.get("previous_secret_until"):
        rows.append(("old secret signs until", _time(found["previous_secret_until"])))
    rows += [("created", f"{_time(found['created_at'])} by {found['created_by']}")]
    print_table(("", ""), rows, header=False)
    if found["state"] == "paused":
        say(f"resume it: shipyard webhook update {name} --resume")
    if not found["deliveries"]:
        say(f"no deliveries yet: shipyard webhook test {name}")
        return
    click.echo()
    _print_deliveries(found["deliveries"])


@webhook_group.command("update", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--receiver-url", metavar="URL", help="Send to this URL from now on.")
@click.option("--url-stdin", is_flag=True, help="Read the new receiver URL from stdin's first line.")
@event_option
@click.option("--format", "message_format", type=click.Choice(FORMATS), help="Write the events this way.")
@click.option("--allow-host", metavar="HOST", help="The host that may be private, loopback or http "
                                                   "(tenant-admins only).")
@click.option("--no-allow-host", is_flag=True, help="Allow no such host any more.")
@click.option("--pause", "state", flag_value="paused", help="Pause it: nothing is sent until it is resumed.")
@click.option("--resume", "state", flag_value="active", help="Resume it (paused by someone, or after a day of "
                                                             "failures): its pending deliveries go out again.")
@api_options
def update(name: str, receiver_url: str | None, url_stdin: bool, events: tuple[str, ...], message_format: str | None,
           allow_host: str | None, no_allow_host: bool, state: str | None, url, token, output: str) -> None:
    """Change webhook NAME: its URL, events (--event replaces them all), format or allowed host; pause or resume it."""
    if allow_host and no_allow_host:
        raise click.UsageError("give --allow-host or --no-allow-host, not both")
    changes: dict = {}
    if events:
        changes["events"] = _events(events)
    if message_format:
        changes["format"] = message_format
    if allow_host or no_allow_host:
        changes["allowed_host"] = allow_host
    if state:
        changes["state"] = state
    api = client(url, token, output)
    receiver = _receiver_url(receiver_url, url_stdin, "--receiver-url", output)
    if receiver is not None:
        changes["url"] = receiver
    if not changes:
        raise click.UsageError("nothing to change: give --receiver-url (or --url-stdin), --event, --format, "
                               "--allow-host, --no-allow-host, --pause or --resume")
    changed = api.call("PATCH", _webhook_path(name), json=changes)
    if output == "json":
        print_json(changed)
        return
    say(f"webhook {name}: {', '.join(changed['events'])} of {scope_words(changed)} to {changed['url']} "
        f"({changed['format']}), {_state_words(changed)}", label="updated")


@webhook_group.command("delete", epilog=EXIT_CODES_HELP)
@click.argument("name")
@yes_option
@api_options
def delete(name: str, yes: bool, url, token, output: str) -> None:
    """Delete webhook NAME: nothing more is sent to it, and its delivery log goes with it."""
    api = client(url, token, output)
    found = api.call("GET", _webhook_path(name))
    confirm(f"delete webhook {name}", f"{found['url']} hears no more of {scope_words(found)}, and the log of its "
                                      "deliveries is deleted.", yes, output)
    api.call("DELETE", _webhook_path(name))
    if output == "json":
        print_json({"ok": True, "deleted": name})
        return
    say(f"webhook {name}", label="deleted")


@webhook_group.command("rotate-secret", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--overlap", type=Overlap(), default="24h", show_default=True,
              help="How long the old secret keeps signing beside the new one (0: it stops now).")
@api_options
def rotate_secret(name: str, overlap: int, url, token, output: str) -> None:
    """Give webhook NAME a new signing secret, printed on stdout once; the old one signs too for --overlap."""
    rotated = client(url, token, output).call("POST", f"{_webhook_path(name)}/rotate-secret",
                                              json={"overlap_seconds": overlap})
    if output == "json":
        print_json(rotated)
        return
    click.echo(rotated["secret"])
    until = rotated.get("previous_secret_until")
    note(name, "the new signing secret above is shown only this once; " +
         (f"the old one signs too until {_time(until)} UTC" if until else "the old one no longer signs"))


@webhook_group.command("deliveries", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--limit", default=RECENT, show_default=True, type=click.IntRange(1, 1000), help="How many, newest "
                                                                                              "first.")
@click.option("--before", "before_id", type=click.IntRange(1), metavar="ID",
              help="Only deliveries older than delivery ID (the next page: the last ID shown).")
@api_options
def deliveries(name: str, limit: int, before_id: int | None, url, token, output: str) -> None:
    """List webhook NAME's deliveries, newest first: each event, what the receiver answered, how often tried."""
    params = {"limit": limit, **({"before": before_id} if before_id else {})}
    found = client(url, token, output).call("GET", f"{_webhook_path(name)}/deliveries", params=params)["deliveries"]
    if output == "json":
        print_json({"deliveries": found})
        return
    if not found:
        say(f"no deliveries{' before ' + str(before_id) if before_id else ''}: shipyard webhook test {name}")
        return
    _print_deliveries(found)
    if len(found) == limit:
        say(f"older deliveries: shipyard webhook deliveries {name} --before {found[-1]['id']}")


@webhook_group.command("redeliver", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.argument("delivery_id", metavar="DELIVERY_ID", type=click.IntRange(1))
@api_options
def redeliver(name: str, delivery_id: int, url, token, output: str) -> None:
    """Send delivery DELIVERY_ID of webhook NAME again (the ID column of `shipyard webhook deliveries`)."""
    again = client(url, token, output).call("POST", f"{_webhook_path(name)}/deliveries/{delivery_id}/redeliver")
    if output == "json":
        print_json(again)
        return
    say(f"delivery {delivery_id} ({again['event']['type']} {again['event']['key']}) goes out again; "
        f"see shipyard webhook deliveries {name}", label="queued")


@webhook_group.command("test", epilog=EXIT_CODES_HELP)
@click.argument("name")
@api_options
def send_test(name: str, url, token, output: str) -> None:
    """Send webhook NAME a test event (webhook.test), to it alone, signed as the others are."""
    sent = client(url, token, output).call("POST", f"{_webhook_path(name)}/test")
    if output == "json":
        print_json(sent)
        return
    say(f"test event {sent['event']['key']} as delivery {sent['id']}; see shipyard webhook deliveries {name}",
        label="queued")


__all__ = ["webhooks", "webhook_group", "EVENT_TYPES", "FORMATS", "scope_words"]
