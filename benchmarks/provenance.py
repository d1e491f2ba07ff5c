"""Where a benchmark's figures come from: the commit, the machine, and an
archive of the logs and metrics behind them.

Authors
 * speechbrain-trkd developers 2026
"""

import os
import platform
import subprocess
import tarfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def git_revision():
    """The repository's HEAD commit (with ``+changes`` if files differ).

    Returns
    -------
    str
        ``unknown`` without git or a repository.

    Example
    -------
    >>> isinstance(git_revision(), str)
    True
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head if clean.returncode == 0 else f"{head}+changes"


def hardware(device):
    """Names the device the benchmark runs on.

    Arguments
    ---------
    device : str
        ``cuda``, ``cuda:N`` or ``cpu``.

    Returns
    -------
    str

    Example
    -------
    >>> hardware("cpu").startswith("CPU")
    True
    """
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    return f"CPU {name}, {os.cpu_count()} cores"


def archive_logs(output_folder, path):
    """Packs the benchmark's logs and metrics (no checkpoints, no scores).

    Arguments
    ---------
    output_folder : str
        The benchmark's output folder.
    path : str
        The ``.tar.gz`` to write.

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = open(os.path.join(out, "log.txt"), "w").write("hello")
    >>> os.makedirs(os.path.join(out, "scores"))
    >>> _ = open(os.path.join(out, "scores", "O.txt"), "w").write("1 a b")
    >>> archive = archive_logs(out, os.path.join(tempfile.mkdtemp(), "a.tgz"))
    >>> tarfile.open(archive).getnames()
    ['log.txt']
    """
    keep = (".txt", ".json", ".csv", ".yaml", ".log", ".md")
    with tarfile.open(path, "w:gz") as tar:
        for folder, dirs, names in os.walk(output_folder):
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in ("scores", "save", "audio_cache", "pretrained")
                and not os.path.islink(os.path.join(folder, d))
            )
            for name in sorted(names):
                full = os.path.join(folder, name)
                if name.endswith(keep) and not os.path.islink(full):
                    tar.add(full, os.path.relpath(full, output_folder))
    return path
