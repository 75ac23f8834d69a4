"""How a plan document (gitops.plan) is shown: text for a terminal or a job log, Markdown for a merge request.

**Text**: per cluster a summary line ("1 to add, 1 to change, 1 to remove", as terraform
counts), the apps with ``+ ~ -`` markers and the renderer's notes, then their diffs; in colour
on a terminal only (click drops the colours anywhere else).

**Markdown**: a comment to post on the merge request. Per cluster a heading with the summary,
and each app added, changed or removed in a collapsible ``<details>`` with its diff in a
``diff`` code block. The comment stays within ``COMMENT_LIMIT`` characters, GitHub's limit for
one comment: while it is over, the largest part is shortened, an app's diff first becoming a
table of its files with the lines each gains and loses, then a table becoming one line; once
every app is one line, the last apps are left out and counted. The comment then says that the
full plan is in the job log. A diff is shown whole or not at all, so no line is ever cut.

What comes from specs (app and file names, notes, lines of a diff) is text in the comment,
never markup: names and notes are written with the characters Markdown and HTML give a meaning
to as character references, and a diff's fence is longer than any run of backticks inside it,
so that no line of a diff can close it.

Only the standard library and click: the formatters run on the document alone.
"""

from __future__ import annotations

import heapq
import re

import click

COMMENT_LIMIT = 65_536  # characters in one GitHub comment
MARKERS = {"added": "+", "changed": "~", "removed": "-"}
COLOURS = {"added": "green", "changed": "yellow", "removed": "red"}
SHOWN = tuple(MARKERS)  # the actions a plan lists app by app; unchanged apps are only counted
TITLE = "## Shipyard plan\n"
SHORTENED = ("Some diffs are too long for one comment and are summarised here; "
             "the full plan is in the job log, where shipyard plan prints it whole.\n")

_SPECIAL = re.compile(r"[\\`*_\[\]<>&|~!#\"']")  # Markdown's inline syntax, HTML, a table's cells


def summary(counts: dict) -> str:
    """``1 to add, 0 to change, 1 to remove, 2 unchanged``, or ``no changes, 2 unchanged``."""
    changes = counts["added"] or counts["changed"] or counts["removed"]
    head = (f"{counts['added']} to add, {counts['changed']} to change, {counts['removed']} to remove" if changes
            else "no changes")
    return head + (f", {counts['unchanged']} unchanged" if counts["unchanged"] else "")


def _listed(cluster: dict) -> list[dict]:
    return [app for app in cluster["apps"] if app["action"] in SHOWN]


# --- text -----------------------------------------------------------------------------------------


def text(document: dict) -> str:
    """The plan for people: per cluster its summary, its apps and their notes, then their diffs."""
    if not document["clusters"]:
        return "no specs: nothing to plan\n"
    out = []
    for cluster in document["clusters"]:
        at = f" at {cluster['commit'][:12]}" if cluster["commit"] else ""
        out.append(click.style(f"cluster {cluster['cluster']}{at}: {summary(cluster['counts'])}", bold=True) + "\n")
        for app in _listed(cluster):
            out.append(click.style(f"  {MARKERS[app['action']]} {app['app']}", fg=COLOURS[app["action"]])
                       + (f"  ({app['spec']})" if app["spec"] else "") + "\n")
            out += [f"    {click.style('note:', fg='yellow')} {note}\n" for note in app["notes"]]
        for app in _listed(cluster):
            out.append("\n" + click.style(f"{MARKERS[app['action']]} {app['app']}", bold=True) + "\n")
            out += [_coloured(line) + "\n" for line in app["diff"].split("\n")[:-1]]  # each line ends in one
    return "".join(out)


def _coloured(line: str) -> str:
    if line.startswith(("---", "+++")):
        return click.style(line, bold=True)
    colour = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1])
    return click.style(line, fg=colour) if colour else line


# --- Markdown -------------------------------------------------------------------------------------


def markdown(document: dict, limit: int = COMMENT_LIMIT) -> str:
    """The plan as a merge request's comment of at most ``limit`` characters."""
    clusters = document["clusters"]
    entries = [(index, _forms(app)) for index, cluster in enumerate(clusters) for app in _listed(cluster)]
    levels, shown = [0] * len(entries), len(entries)
    excess = _length(_comment(clusters, entries, levels, shown)) - limit
    if excess > 0:
        excess += len(SHORTENED) + 1
        largest = [(-len(forms[0]), index) for index, (_, forms) in enumerate(entries)]
        heapq.heapify(largest)
        while excess > 0 and largest:
            _, index = heapq.heappop(largest)
            forms, level = entries[index][1], levels[index]
            excess -= len(forms[level]) - len(forms[level + 1])
            levels[index] = level + 1
            if level + 1 < 2:
                heapq.heappush(largest, (-len(forms[level + 1]), index))
        while excess > 0 and shown:
            shown -= 1
            excess -= len(entries[shown][1][levels[shown]]) + 1
    parts = _comment(clusters, entries, levels, shown)
    while _length(parts) > limit and shown:  # the lines that count the apps left out take their room too
        shown -= 1
        parts = _comment(clusters, entries, levels, shown)
    return "\n".join(parts)


def _length(parts: list[str]) -> int:
    return sum(map(len, parts)) + len(parts) - 1


def _comment(clusters: list[dict], entries: list[tuple[int, tuple[str, str, str]]], levels: list[int],
             shown: int) -> list[str]:
    """The comment's parts (joined by newlines), each app at its level, only the first ``shown`` apps."""
    parts = [TITLE]
    if shown < len(entries) or any(levels):
        parts.append(SHORTENED)
    if not clusters:
        parts.append("No specs: nothing to plan.\n")
    for index, cluster in enumerate(clusters):
        parts.append(f"### <code>{_text(cluster['cluster'])}</code>: {summary(cluster['counts'])}\n")
        if cluster["commit"]:
            parts.append(f"Planned against commit <code>{_text(cluster['commit'][:12])}</code>.\n")
        mine = [i for i, (owner, _) in enumerate(entries) if owner == index]
        parts += [entries[i][1][levels[i]] for i in mine if i < shown]
        if left_out := sum(i >= shown for i in mine):
            parts.append(f"{left_out} more app{'s' if left_out != 1 else ''} left out: the full plan is in the "
                         "job log.\n")
    return parts


def _forms(app: dict) -> tuple[str, str, str]:
    """An app's part of the comment at each level: its diff, a table of its files, one line."""
    files = app["files"]
    added, removed = sum(f["added"] for f in files), sum(f["removed"] for f in files)
    name = f"<code>{MARKERS[app['action']]} {_text(app['app'])}</code>"
    source = f" from <code>{_text(app['spec'])}</code>" if app["spec"] else ""
    size = f"{len(files)} file{'s' if len(files) != 1 else ''}, +{added} -{removed}"
    head = f"<details><summary>{name} {app['action']}{source}: {size}</summary>\n"
    notes = "".join(f"- note: {_text(note)}\n" for note in app["notes"])
    notes += "\n" if notes else ""
    fence = _fence(app["diff"])
    full = f"{head}\n{notes}{fence}diff\n{app['diff']}{fence}\n\n</details>\n"
    rows = "".join(f"| <code>{_text(f['path'])}</code> | {f['change']} | {f['added']} | {f['removed']} |\n"
                   for f in files)
    table = (f"{head}\n{notes}The diff is too long for this comment; it is in the job log.\n\n"
             f"| file | change | + | - |\n|---|---|--:|--:|\n{rows}\n</details>\n")
    line = f"- {name} {app['action']}{source}: {size}; the diff is in the job log\n"
    table = min(table, full, key=len)  # a short diff is shorter than the table of its files
    return full, table, min(line, table, key=len)


def problems(lines: list[str], limit: int = COMMENT_LIMIT) -> str:
    """Invalid specs as a merge request's comment: each problem (FILE:LINE:COL: message) in a code block,
    whole lines only; those beyond ``limit`` are counted and left to the job log."""
    count = len(lines)
    head = (f"{TITLE}\n**The specs are invalid**: {count} problem{'s' if count != 1 else ''} found; nothing "
            "was planned.\n\n")
    fence = _fence("\n".join(lines))
    shown, room = [], limit - len(head) - 2 * (len(fence) + 1) - 80  # 80: the line counting those left out
    for line in lines:
        if room < len(line) + 1:
            break
        shown.append(line)
        room -= len(line) + 1
    tail = f"{count - len(shown)} more in the job log.\n" if len(shown) < count else ""
    return f"{head}{fence}\n" + "".join(f"{line}\n" for line in shown) + f"{fence}\n{tail}"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``, so that no line of it closes the block."""
    return "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))


def _text(value: object) -> str:
    """A value from a spec as text in Markdown or HTML: one line, its special characters as references."""
    return _SPECIAL.sub(lambda match: f"&#{ord(match.group())};", " ".join(str(value).split()))


__all__ = ["COMMENT_LIMIT", "summary", "text", "markdown", "problems"]
