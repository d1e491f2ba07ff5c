"""One run per output folder: a lock file that names its holder.

Two runs writing one output folder corrupt each other (one deletes the
other's checkpoints, the train log gets every epoch twice). ``RunLock``
creates ``<folder>/run.lock`` atomically, holding the process id, the host
and the start time, and removes it when the run ends. A second run on the
folder stops at once with a message naming the holder. A lock whose process
is gone (a killed run on this host) is recognised and taken over, with a
warning; a lock from another host cannot be checked and is never taken
over silently.

Authors
 * speechbrain-trkd developers 2026
"""

import json
import logging
import os
import socket
import time

LOCK_FILE = "run.lock"

logger = logging.getLogger(__name__)


def _process_alive(pid):
    """Whether a process of this host has this id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """Holds ``<folder>/run.lock`` for the length of a ``with`` block.

    Arguments
    ---------
    folder : str
        The run's output folder (created when missing).
    what_to_do : str
        The advice of the message when another live process holds it.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     with RunLock(folder):
    ...         pass
    Traceback (most recent call last):
    ...
    RuntimeError: ... is in use by process ... on ... since ...
    >>> os.path.exists(os.path.join(folder, LOCK_FILE))
    False
    """

    def __init__(
        self,
        folder,
        what_to_do="wait for that run to end, or give this run another "
        "output_folder",
    ):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.what_to_do = what_to_do

    def _holder(self):
        """The lock file's content, or None when it is unreadable."""
        try:
            with open(self.path, encoding="utf-8") as fin:
                return json.load(fin)
        except (OSError, ValueError):
            return None

    def _take_over_if_stale(self):
        """Removes a lock whose holder is gone; raises for a live one."""
        holder = self._holder()
        host = socket.gethostname()
        if holder is None:
            raise RuntimeError(
                f"{self.folder} holds an unreadable {LOCK_FILE}: if no run "
                f"uses this folder, delete {self.path}"
            )
        pid, where = int(holder.get("pid", -1)), holder.get("host")
        if where == host and not _process_alive(pid):
            logger.warning(
                "%s: taking over the lock of process %d (%s), which is gone",
                self.folder,
                pid,
                holder.get("started"),
            )
            os.remove(self.path)
            return
        message = (
            f"{self.folder} is in use by process {pid} on {where} since "
            f"{holder.get('started')}: {self.what_to_do}"
        )
        if where != host:
            message += (
                f" (that host cannot be checked from here: if no run is "
                f"left there, delete {self.path})"
            )
        raise RuntimeError(message)

    def __enter__(self):
        os.makedirs(self.folder, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fout:
                json.dump(record, fout)
            return self
        raise RuntimeError(f"{self.path} was taken by another run meanwhile")

    def __exit__(self, *exc_info):
        if os.path.exists(self.path):
            os.remove(self.path)
        return False
