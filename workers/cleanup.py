"""Remove what killed workers on this machine left: folders in the temporary directory, and
processes a model started.

A worker's folders (the artifact copy, and the model process's folder with the hidden test set's
features) are removed when its task ends, however it ends, except when the worker itself is
killed. Their names carry the owning process's pid, so a worker starting later removes those
whose owner is gone. Likewise every process of a model carries its worker's identity
(evaluators/processes.py): one whose worker is gone is killed.
"""

import logging
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from evaluators.processes import owner_alive, processes_owned
from evaluators.sandbox import MODEL_DIR_PREFIX
from workers.evaluation import EVAL_DIR_PREFIX

log = logging.getLogger(__name__)

_OWNED_FOLDER = re.compile(rf"^(?:{re.escape(MODEL_DIR_PREFIX)}|{re.escape(EVAL_DIR_PREFIX)})(\d+)-")


def leftovers_remove() -> None:
    """What killed workers left on this machine: their model processes, then their folders."""
    orphan_models_kill()
    stale_folders_remove()


def orphan_models_kill() -> list[int]:
    """SIGKILL this user's model processes (and what they started) whose worker is gone; their pids."""
    killed = []
    for pid, owner in processes_owned():
        if pid == os.getpid() or owner_alive(owner):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        killed.append(pid)
    if killed:
        log.warning("killed %d model processes that outlived their workers: %s", len(killed), killed)
    return killed


def stale_folders_remove(directory: str | None = None) -> list[Path]:
    """Remove this user's Holdout folders whose owning process has ended; returns them."""
    removed = []
    root = Path(directory or tempfile.gettempdir())
    for entry in root.iterdir():
        match = _OWNED_FOLDER.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        if entry.stat().st_uid != os.getuid() or _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        log.warning("removed %d temporary folders left by killed workers: %s", len(removed), [p.name for p in removed])
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and its folder is not ours to judge
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")  # a zombie works on nothing
