"""Where a benchmark's figures come from: the commit and the machine.

Authors
 * speechbrain-trkd developers 2026
"""

import os
import platform
import subprocess
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
