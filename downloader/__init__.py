"""Shipyard's downloader: puts an app's artifacts in place before the app starts.

``python -m downloader huggingface --repo-id=<id> --revision=<rev> --dest=<dir> [--ignore-pattern=<glob>]...``
fetches one Hugging Face Hub repository (the files of a commit, branch or tag, less those matching
an ignore pattern) into ``dest`` with huggingface_hub's ``snapshot_download``. renderer.artifacts
renders one init container per artifact that runs it; the app's container starts only once every
init container has exited 0 (Kubernetes, "Init Containers").

Files already in ``dest`` (a cache volume kept from an earlier pod) are checked against the Hub,
not downloaded again; a download cut short is resumed. A gated or private model is read with the
token in ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``), from the app's env. A failure exits non-zero
with one line saying why; the kubelet then restarts the init container with a growing back-off,
which is the retry: what fails for good (no such model or revision, no access) says so in the line
``kubectl describe pod`` shows. Runs in the image the cluster profile names
(``artifacts.downloader_image``), which installs this project with its ``downloader`` extra.
"""

from downloader.huggingface import DownloadError, fetch

__all__ = ["DownloadError", "fetch"]
