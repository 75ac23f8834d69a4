"""The text a request carries, checked once at the door: refused when no name or field can hold it.

PostgreSQL text cannot hold NUL: a name with a NUL in it that reached a query
raised deep inside the driver, so ``/git/default/a%00.git/info/refs`` or a
login with a NUL in the username answered 500 and logged a traceback. Bytes
that are not UTF-8 cannot be a name either; werkzeug decodes them to U+FFFD
(path) or keeps them percent-encoded (query, urlencoded form), so a view
would look up a name the client never sent. Neither can name anything that
exists, so the whole request is refused before routing errors, CSRF,
authentication or any view runs, whatever the route:

=================================  ==========================================
where                              refused when it holds
=================================  ==========================================
path                               NUL, or percent-encoded bytes not UTF-8
query string (keys and values)     NUL, or percent-encoded bytes not UTF-8
urlencoded form body               NUL, or percent-encoded bytes not UTF-8
multipart form fields, file names  NUL
any header value                   NUL (RFC 9110 5.5: never valid in a field)
=================================  ==========================================

A body sent without a Content-Length (chunked) is bounded by werkzeug at
MAX_CONTENT_LENGTH, but its whole read stops there silently, answering the body
cut short: a signature would then be checked over the wrong bytes, or a token
accept a cut body. :class:`BoundedRequest` refuses such a body with 413 instead,
as one whose Content-Length is over the limit is.

The answer is a 400 in the style of the route's family: the API's JSON error
(``invalid_request``) for /api, /agent, /git and anything unrouted, a plain
text 400 for the HTML pages. JSON bodies are checked where they are parsed
(:func:`loads_storable`, called by the API's and the agent's views), since only
the view knows a body is JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from flask import Flask, Request, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from contract.errors import InvalidRequest
from webapp.errors import error_response


def _encoded_problem(where: str, encoded: bytes) -> str | None:
    """Why percent-encoded ``encoded`` (a path, a query string, a urlencoded body) is refused, or None."""
    decoded = unquote_to_bytes(encoded)
    if b"\x00" in decoded:
        return f"the {where} holds a NUL character (%00), which no name or field can hold"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return f"the {where} holds percent-encoded bytes that are not UTF-8"
    return None


def _raw_path() -> bytes:
    """The path as the client sent it, before the server decoded it (with replacement) into PATH_INFO."""
    environ = request.environ
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw_uri:
        return urlsplit(raw_uri).path.encode("latin-1", "replace")
    # PATH_INFO is already percent-decoded: quote nothing away, only '%' itself would be read twice
    return environ.get("PATH_INFO", "").encode("latin-1", "replace").replace(b"%", b"%25")


def refusal() -> str | None:
    """Why this request's text is refused, or None when every part of it may go on."""
    problem = _encoded_problem("path", _raw_path()) or _encoded_problem("query string", request.query_string)
    if problem:
        return problem
    for name, value in request.headers.items():
        if "\x00" in value:
            return f"the {name} header holds a NUL character"
    if request.mimetype == "application/x-www-form-urlencoded":
        # read once and kept: the form parser and the view read the same bytes again
        return _encoded_problem("form body", request.get_data())
    if request.mimetype == "multipart/form-data":
        texts = [text for item in request.form.items(multi=True) for text in item]
        texts += [text for name, upload in request.files.items(multi=True) for text in (name, upload.filename or "")]
        if any("\x00" in text for text in texts):
            return "a form field holds a NUL character, which no name or field can hold"
    return None


def _refuse_unstorable_text() -> Response | None:
    problem = refusal()
    if problem is None:
        return None
    if request.blueprint == "pages":
        return Response(f"Bad request: {problem}.\n", status=400, mimetype="text/plain")
    return error_response(400, "invalid_request", problem)


class BoundedRequest(Request):
    """A request whose body, read whole, is refused (413) when it reaches MAX_CONTENT_LENGTH unannounced."""

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):
        data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        limit = self.max_content_length
        if self.content_length is None and limit is not None and len(data) >= limit:
            raise RequestEntityTooLarge(f"the request body is {limit} bytes or more")
        return data.decode(errors="replace") if as_text else data


def init_app(app: Flask) -> None:
    """Register the check; call it before anything else registers a before-request function."""
    app.request_class = BoundedRequest
    app.before_request(_refuse_unstorable_text)


# --- JSON bodies ---------------------------------------------------------------------------


# Only these escapes put what no database text holds into parsed JSON: raw NUL bytes and
# surrogates are already invalid in JSON text and in UTF-8.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def loads_storable(raw: bytes) -> Any:
    """Parse a JSON body that the database can store; InvalidRequest when it is not one.

    The tree is walked for NUL and lone surrogates only when the text holds an escape that can
    make one, so ordinary bodies are checked at the speed of a regular expression search.
    """
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("the body is not valid JSON (UTF-8)") from exc
    if _UNSTORABLE_ESCAPE.search(text):
        try:
            _check_storable(data)
        except RecursionError as exc:
            raise InvalidRequest("the body is nested too deeply") from exc
    return data


def _check_storable(value: Any) -> None:
    """JSON can escape what no database text holds: lone surrogates (\\ud800) and NUL (\\u0000)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)
    elif isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest("the body holds a NUL character (\\u0000), which no text field can hold")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest("the body holds an unpaired surrogate escape; it is not valid Unicode") from exc


__all__ = ["init_app", "refusal", "loads_storable"]
