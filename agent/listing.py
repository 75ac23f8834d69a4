"""A list response read from the socket an object at a time: memory bounded by one object, not the page.

``json.loads`` of a list page holds the page's bytes and every object of it
as dicts at once, roughly ten times the page's size (500 Pods of 7 KB: 36 MB
per page, per watcher listing at the time). An API server may also ignore
``limit`` and answer the whole collection in one response (one served from
its watch cache, ``resourceVersion=0``, before Kubernetes 1.33 paginated
those: kubernetes/kubernetes#70735, "Use watch cache when rv=0 even when
limit is set"; the list API's ``limit``: "Servers may choose not to support
the limit argument and will return all of the available results").

So a page is read in chunks off the response and its ``items`` are parsed one
at a time, as the caller walks them, with the standard library's own
scanner (``json.JSONDecoder.raw_decode``): what is held is a chunk, the part
of an object not yet complete, and the one object the caller summarises.

The envelope's other members are parsed when reached. The API server writes
``metadata`` before ``items`` (apimachinery's ``List`` types: TypeMeta,
ListMeta, then Items), so ``resourceVersion`` and ``continue`` are known
before the first item; a server writing them after would fill the same
``metadata`` dict once the items are read.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from json.decoder import WHITESPACE

CHUNK = 64 * 1024
_DECODER = json.JSONDecoder()


class JsonReader:
    """A JSON text read from ``read(n)`` in chunks, parsed one value or token at a time."""

    def __init__(self, read, chunk: int = CHUNK):
        self._read = read
        self._chunk = chunk
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._at = 0
        self.eof = False
        self.read_bytes = 0

    def _more(self) -> bool:
        if self.eof:
            return False
        data = self._read(self._chunk)
        self.read_bytes += len(data)
        self.eof = not data
        self._text = self._text[self._at:] + self._utf8.decode(data, final=self.eof)
        self._at = 0
        return True

    def peek(self) -> str:
        """The next character that is not white space."""
        while True:
            self._at = WHITESPACE.match(self._text, self._at).end()
            if self._at < len(self._text):
                return self._text[self._at]
            if not self._more():
                raise ValueError("the list response ended before its JSON did")

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise ValueError(f"expected {char!r} in the list response, found {found!r}")
        self._at += 1

    def value(self):
        """The next JSON value, reading as many chunks as it spans."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self._text, self._at)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise
            if end == len(self._text) and not self.eof and self._more():
                continue  # a number at the end of the chunk may go on in the next
            self._at = end
            return value


def parse_list(read, on_done=None) -> dict:
    """A list response (``read(n)`` gives its bytes) as a dict whose ``items`` is an iterator.

    Members before ``items`` are parsed now; the items one at a time as they are iterated, once;
    members after them when the items are done. ``metadata`` is always a dict (filled in place if
    it comes late). ``on_done(count, read_bytes)`` is called once the response is read to its end.
    """
    reader = JsonReader(read)
    page: dict = {"metadata": {}}
    reader.expect("{")

    def members() -> bool:
        """Parse members up to ``items`` (True, positioned at its value) or the end (False)."""
        while True:
            if reader.peek() == "}":
                reader.expect("}")
                return False
            if reader.peek() == ",":
                reader.expect(",")
            key = reader.value()
            reader.expect(":")
            if key == "items":
                return True
            value = reader.value()
            if key == "metadata" and isinstance(value, dict):
                page["metadata"].update(value)
            else:
                page[key] = value

    def items() -> Iterator[dict]:
        count = 0
        if reader.peek() == "n":
            if reader.value() is not None:
                raise ValueError("the list response's items are not an array")
        else:
            reader.expect("[")
            if reader.peek() == "]":
                reader.expect("]")
            else:
                while True:
                    yield reader.value()
                    count += 1
                    if reader.peek() == "]":
                        reader.expect("]")
                        break
                    reader.expect(",")
        if members():
            raise ValueError("the list response has two items members")
        if on_done is not None:
            on_done(count, reader.read_bytes)

    if members():
        page["items"] = items()
    else:  # no items member: an empty list
        page["items"] = iter(())
        if on_done is not None:
            on_done(0, reader.read_bytes)
    return page

__all__ = ["JsonReader", "parse_list", "CHUNK"]
