"""One Hugging Face Hub repository, downloaded into a directory."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


class DownloadError(Exception):
    """A download that did not complete; the message says why in a user's words."""


def _token() -> str | None:
    """The token for gated and private repositories, under either of huggingface_hub's names for it."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def fetch(repo_id: str, revision: str, dest: str | Path, ignore_patterns: list[str] | None = None) -> Path:
    """Download ``repo_id`` at ``revision`` into ``dest`` (files already there are checked, not fetched again)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_dir=dest,
                                      ignore_patterns=ignore_patterns or None, token=_token()))
    except GatedRepoError as exc:  # before RepositoryNotFoundError: it is one
        raise DownloadError(f"{repo_id} is gated: accept its terms on the Hub and give the app an HF_TOKEN "
                            "of an account that did") from exc
    except RepositoryNotFoundError as exc:
        raise DownloadError(f"{repo_id} does not exist on the Hub, or is private and HF_TOKEN "
                            f"{'cannot read it' if _token() else 'is not set'}") from exc
    except RevisionNotFoundError as exc:
        raise DownloadError(f"{repo_id} has no revision {revision!r}; name a branch, tag or commit it has") from exc
    except LocalEntryNotFoundError as exc:  # the Hub could not be reached and nothing is in dest yet
        raise DownloadError(f"cannot reach the Hub to download {repo_id}: {exc}") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise DownloadError(f"downloading {repo_id} at {revision} failed: {exc}") from exc


__all__ = ["DownloadError", "fetch"]
