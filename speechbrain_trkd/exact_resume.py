"""What a run needs to resume exactly where it stopped.

SpeechBrain's checkpoints hold the weights, the optimizer, the epoch and the
training loader's position, but no random state: a resumed run draws other
crops, augmentations and dropout masks than an uninterrupted one and ends
elsewhere. ``RandomStates`` is a checkpoint recoverable for the generators
that training draws from: Python's (crops, cached views), numpy's and
torch's (augmentation, dropout; CUDA's too). ``TerminationRequest`` holds a
SIGTERM (a scheduler's preemption, ``kill``) until the run has saved a
checkpoint, then stops it; the same command resumes.

A mid-epoch resume is exact when the loader has no workers
(``num_workers=0``): loader workers draw the crops from generators that
restart with each iteration, so after a mid-epoch resume they draw afresh.
An end-of-epoch resume is exact with any number of workers.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import logging
import random
import signal
import threading

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

logger = logging.getLogger(__name__)


def _current_states():
    """The global generators' states, as data a weights-only load reads."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position)
        + (has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all()
        if torch.cuda.is_initialized()
        else [],
    }


def _set_data_states(states):
    """Sets Python's and numpy's generators (those of the data pipeline)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state(
        (name, keys.numpy().astype(np.uint32), position, has_gauss, cached)
    )


def _set_model_states(states):
    """Sets torch's generators (augmentation, dropout)."""
    torch.set_rng_state(states["torch"])
    cuda = states["cuda"]
    if (
        cuda
        and torch.cuda.is_available()
        and len(cuda) == (torch.cuda.device_count())
    ):
        torch.cuda.set_rng_state_all(cuda)


@register_checkpoint_hooks
class RandomStates:
    """The random states of training, saved and restored with a checkpoint.

    An end-of-epoch checkpoint's states are set when it is loaded. A
    mid-epoch one was saved after its epoch's loader had started (which
    draws its workers' seed from torch's generator), so its states are set
    as the resumed epoch reaches the same point: Python's and numpy's when
    the training stage starts (``resume_data_draws``), before the loader
    reads the next batch, and torch's at the first batch
    (``resume_model_draws``).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "random_states.ckpt")
    >>> states = RandomStates()
    >>> _ = torch.manual_seed(3); random.seed(3)
    >>> states.save(path)
    >>> first = (torch.rand(1), random.random())
    >>> states.load(path, end_of_epoch=True)
    >>> (torch.rand(1), random.random()) == first
    True
    >>> states.load(path, end_of_epoch=False)
    >>> states.resume_data_draws(); states.resume_model_draws()
    >>> (torch.rand(1), random.random()) == first
    True
    """

    def __init__(self):
        self._pending = None

    @mark_as_saver
    def save(self, path):
        """Saves the generators' states to ``path``.

        Example
        -------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "states.ckpt")
        >>> RandomStates().save(path)
        >>> sorted(torch.load(path, weights_only=True))
        ['cuda', 'numpy', 'python', 'torch']
        """
        torch.save(_current_states(), path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Reads the states of ``path`` (weights only): sets them now after
        an epoch's end, or when the resumed epoch reaches their point.

        Example
        -------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "states.ckpt")
        >>> states = RandomStates()
        >>> states.save(path)
        >>> first = random.random()
        >>> states.load(path, end_of_epoch=True)
        >>> random.random() == first
        True
        """
        states = torch.load(path, weights_only=True)
        if end_of_epoch:
            _set_data_states(states)
            _set_model_states(states)
        else:
            self._pending = states

    def resume_data_draws(self):
        """Sets a mid-epoch checkpoint's Python and numpy states, if any.

        Example
        -------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "states.ckpt")
        >>> states = RandomStates()
        >>> states.save(path)
        >>> first = random.random()
        >>> states.load(path)  # mid-epoch: nothing is set yet
        >>> states.resume_data_draws()
        >>> random.random() == first
        True
        """
        if self._pending is not None:
            _set_data_states(self._pending)

    def resume_model_draws(self):
        """Sets a mid-epoch checkpoint's torch states, if any (once).

        Example
        -------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "states.ckpt")
        >>> states = RandomStates()
        >>> states.save(path)
        >>> first = torch.rand(1)
        >>> states.load(path)
        >>> states.resume_model_draws()
        >>> torch.equal(torch.rand(1), first)
        True
        >>> states.resume_model_draws()  # once: now a no-op
        >>> torch.equal(torch.rand(1), first)
        False
        """
        if self._pending is not None:
            _set_model_states(self._pending)
            self._pending = None


class TerminationRequest:
    """A SIGTERM, held until the run has saved a checkpoint.

    Example
    -------
    >>> import os
    >>> request = TerminationRequest()
    >>> with request.catching():
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ...     request.requested
    True
    """

    def __init__(self):
        self.requested = False

    @contextlib.contextmanager
    def catching(self):
        """Within the block, a SIGTERM sets ``requested`` instead of ending
        the process (signals reach only the main thread).

        Example
        -------
        >>> request = TerminationRequest()
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with request.catching():
        ...     signal.getsignal(signal.SIGTERM) == request._note
        True
        >>> signal.getsignal(signal.SIGTERM) == before
        True
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._note)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _note(self, signum, frame):
        """The SIGTERM handler."""
        logger.warning(
            "SIGTERM: the run saves a checkpoint at its next step, then stops"
        )
        self.requested = True

    def stop_if_requested(self, checkpoint):
        """Ends the process (exit status 143, as a SIGTERM would) if a
        SIGTERM came; ``checkpoint`` names what was saved, for the log.

        Example
        -------
        >>> request = TerminationRequest()
        >>> request.stop_if_requested("the checkpoint of epoch 1")
        >>> request.requested = True
        >>> request.stop_if_requested("the checkpoint of epoch 1")
        Traceback (most recent call last):
        ...
        SystemExit: 143
        """
        if self.requested:
            logger.warning(
                "Stopped on SIGTERM after saving %s: the same command "
                "resumes the run",
                checkpoint,
            )
            raise SystemExit(143)
