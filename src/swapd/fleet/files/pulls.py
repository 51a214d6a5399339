"""Downloads from the Hugging Face Hub into this machine's cache, as jobs with progress.

``swapd files pull org/repo[:FILE]`` asks the server; it lists the repository at the revision
(``HfApi.model_info`` with file sizes), keeps the files that match ``FILE`` (a name or a glob,
``*Q4_K_M.gguf``; every file without one) and fetches them one by one with ``hf_hub_download``
into the cache that :func:`~swapd.fleet.files.listing.hub_cache` names. The token is
``huggingface_hub``'s own: ``HF_TOKEN`` in swapd's environment, else ``hf auth login``'s; it
is sent to the endpoint (``HF_ENDPOINT``) and never shown.

A job runs on its own thread (the client is synchronous) and reports its bytes through the
progress-bar object ``huggingface_hub`` writes to; cancelling makes that object raise, which
ends the transfer between two chunks and leaves a partial file that the next pull resumes.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from swapd.errors import Conflict, NotFound, RequestError
from swapd.fleet.files.listing import hub_cache

log = logging.getLogger("swapd.files")

KEPT = 50  # finished jobs remembered (the oldest go first)
RUNNING_MAX = 4  # downloads at the same time
RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class PullCancelled(Exception):
    """Raised from the progress callback to stop a download."""


def parse_target(target: str) -> tuple[str, str | None]:
    """``org/repo[:FILE]`` → (repository id, file name or glob or None)."""
    repo, _, pattern = target.strip().partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise RequestError(f"expected org/repo[:FILE], got {target!r}")
    return repo, pattern or None


@dataclass(slots=True)
class Pull:
    """One download job; its fields are written by its thread and read by the API."""

    id: str
    repo: str
    pattern: str | None
    revision: str
    state: str = RUNNING
    total: int = 0  # bytes of every file it fetches
    done: int = 0  # bytes fetched (files already in the cache count as fetched)
    file: str = ""  # the file being fetched
    files: list[str] = field(default_factory=list)
    path: str = ""  # the snapshot folder once done
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repo": self.repo,
            "file": self.pattern,
            "revision": self.revision,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "current": self.file,
            "files": list(self.files),
            "path": self.path,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
        }


def meter(pull: Pull, base: int) -> type:
    """A progress-bar class for ``huggingface_hub`` that counts into ``pull`` (from ``base``
    bytes, the files already fetched) and stops the transfer once the pull is cancelled.

    Bytes written count (``update``); a Xet download's network bytes (``update_transfer``,
    which also makes its reporter use this one bar for both) do not, nor do rate texts."""

    class Meter:
        total: int | None = None

        def __init__(self, *args: Any, initial: int = 0, **kwargs: Any) -> None:
            self.total = kwargs.get("total")
            pull.done = base + initial

        def update(self, n: float | None = 1) -> None:
            if pull.cancel.is_set():
                raise PullCancelled
            pull.done += int(n or 0)

        def update_transfer(self, n: float | None = 1) -> None:
            pass

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        set_transfer_postfix_str = set_postfix_str

        def refresh(self) -> None:
            pass

        def close(self) -> None:
            pass

        def __enter__(self) -> Meter:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return Meter


def _message(exc: Exception) -> str:
    """A Hub error in one line, its class name first (``GatedRepoError: …``)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'failed'}"


def fetch(pull: Pull) -> None:
    """Run ``pull`` to its end on this thread: done, failed or cancelled."""
    from huggingface_hub import HfApi, hf_hub_download

    cache = hub_cache()
    try:
        info = HfApi().model_info(pull.repo, revision=pull.revision, files_metadata=True)
        wanted = [
            s
            for s in info.siblings or []
            if pull.pattern is None
            or s.rfilename == pull.pattern
            or fnmatch.fnmatch(s.rfilename, pull.pattern)
        ]
        if not wanted:
            raise FileNotFoundError(f"no file of {pull.repo} matches {pull.pattern!r}")
        pull.files = [s.rfilename for s in wanted]
        pull.total = sum(s.size or 0 for s in wanted)
        fetched = 0
        for sibling in wanted:
            if pull.cancel.is_set():
                raise PullCancelled
            pull.file = sibling.rfilename
            path = hf_hub_download(
                pull.repo,
                sibling.rfilename,
                revision=info.sha,
                cache_dir=cache,
                tqdm_class=meter(pull, fetched),
            )
            fetched += sibling.size or 0
            pull.done = fetched
            pull.path = path[: -len(sibling.rfilename)].rstrip("/")
        pull.state = DONE
    except PullCancelled:
        pull.state = CANCELLED
    except Exception as exc:  # the thread's edge: whatever fails ends the job, with its reason
        pull.error, pull.state = _message(exc), FAILED
        if not isinstance(exc, OSError | ValueError):  # Hub errors are OSErrors
            log.warning("download %s of %s failed", pull.id, pull.repo, exc_info=exc)
    finally:
        pull.file = ""
        pull.finished = time.time()


class Pulls:
    """The download jobs of one server: started, listed, cancelled."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Pull] = OrderedDict()
        self._ids = itertools.count(1)

    def start(self, target: str, revision: str = "main") -> Pull:
        repo, pattern = parse_target(target)
        running = [p for p in self._jobs.values() if p.state == RUNNING]
        for pull in running:
            if (pull.repo, pull.pattern, pull.revision) == (repo, pattern, revision):
                return pull  # the same download is under way: follow that one
        if len(running) >= RUNNING_MAX:
            raise Conflict(f"{RUNNING_MAX} downloads are running; wait or cancel one")
        pull = Pull(f"pull-{next(self._ids)}", repo, pattern, revision)
        self._jobs[pull.id] = pull
        finished = [p.id for p in self._jobs.values() if p.state != RUNNING]
        for old in finished[: max(0, len(finished) - KEPT)]:
            del self._jobs[old]
        threading.Thread(target=fetch, args=(pull,), name=pull.id, daemon=True).start()
        return pull

    def get(self, pull_id: str) -> Pull:
        pull = self._jobs.get(pull_id)
        if pull is None:
            raise NotFound(f"no download {pull_id!r}")
        return pull

    def all(self) -> list[Pull]:
        return list(self._jobs.values())

    def cancel(self, pull_id: str) -> Pull:
        pull = self.get(pull_id)
        pull.cancel.set()
        return pull
