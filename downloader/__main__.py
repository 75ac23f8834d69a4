"""``python -m downloader``: the command line of Shipyard's downloader (see the package's docstring)."""

from __future__ import annotations

import argparse
import sys

from downloader.huggingface import DownloadError, fetch


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m downloader", description="Download an app's artifacts.")
    sources = parser.add_subparsers(dest="source", required=True)
    hub = sources.add_parser("huggingface", help="a repository of the Hugging Face Hub")
    hub.add_argument("--repo-id", required=True, help="the model, e.g. google/gemma-2-2b-it")
    hub.add_argument("--revision", required=True, help="a branch, tag or commit")
    hub.add_argument("--dest", required=True, help="the directory the files go to")
    hub.add_argument("--ignore-pattern", action="append", default=[], dest="ignore_patterns",
                     help="a glob of files not to download (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        path = fetch(args.repo_id, args.revision, args.dest, args.ignore_patterns)
    except DownloadError as exc:
        print(f"downloader: {exc}", file=sys.stderr)
        return 1
    print(f"downloader: {args.repo_id} at {args.revision} is in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
