"""Run checkpoints loaded as data: every file of a checkpoint is read with
``torch.load(weights_only=True)``, whatever the environment says, and a
file that cannot be read is named by its path.

SpeechBrain's loaders (``torch_recovery``, the schedulers' own) call
``torch.load`` without ``weights_only``, which
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turns into a full unpickling: a run
folder received from someone else could then run code on resume or export.
``WeightsOnlyCheckpointer`` is SpeechBrain's ``Checkpointer`` with its loads
forced weights-only.

Authors
 * speechbrain-trkd developers 2026
"""

import contextlib
import os

from speechbrain.utils.checkpoints import Checkpointer

FORCE_SAFE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def weights_only_loads():
    """Within the block, every ``torch.load`` is weights-only, including
    those that pass no ``weights_only`` (torch reads these two variables at
    each call); the environment is restored afterwards.

    Example
    -------
    >>> os.environ[FORCE_UNSAFE] = "1"
    >>> with weights_only_loads():
    ...     os.environ.get(FORCE_UNSAFE), os.environ[FORCE_SAFE]
    (None, '1')
    >>> os.environ.pop(FORCE_UNSAFE)
    '1'
    """
    saved = {key: os.environ.get(key) for key in (FORCE_SAFE, FORCE_UNSAFE)}
    os.environ.pop(FORCE_UNSAFE, None)
    os.environ[FORCE_SAFE] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def failing_file(error):
    """The checkpoint file whose loading raised ``error`` (the file that
    SpeechBrain's ``Checkpointer._call_load_hooks`` was loading), or None.

    Arguments
    ---------
    error : BaseException
        Raised by ``Checkpointer.load_checkpoint``.

    Returns
    -------
    str or None

    Example
    -------
    >>> print(failing_file(ValueError("raised elsewhere")))
    None
    """
    trace = error.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_code.co_name == "_call_load_hooks":
            return frame.f_locals.get("loadpath")
        trace = trace.tb_next
    return None


class WeightsOnlyCheckpointer(Checkpointer):
    """SpeechBrain's ``Checkpointer``, loading every checkpoint file
    weights-only (see :func:`weights_only_loads`) and naming a file that
    cannot be loaded.

    Arguments
    ---------
    *args, **kwargs
        Those of ``speechbrain.utils.checkpoints.Checkpointer``.

    Example
    -------
    >>> import tempfile
    >>> import torch
    >>> layer = torch.nn.Linear(2, 2)
    >>> checkpointer = WeightsOnlyCheckpointer(
    ...     tempfile.mkdtemp(), recoverables={"layer": layer})
    >>> _ = checkpointer.save_checkpoint()
    >>> weight = layer.weight.detach().clone()
    >>> with torch.no_grad():
    ...     _ = layer.weight.zero_()
    >>> _ = checkpointer.recover_if_possible()
    >>> torch.equal(layer.weight, weight)
    True
    """

    def load_checkpoint(self, checkpoint):
        """Loads ``checkpoint`` weights-only; raises ``ValueError`` naming
        the file when one of its files cannot be read that way.

        Arguments
        ---------
        checkpoint : speechbrain.utils.checkpoints.Checkpoint
            The checkpoint to load.

        Example
        -------
        >>> import tempfile
        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> checkpointer = WeightsOnlyCheckpointer(
        ...     tempfile.mkdtemp(), recoverables={"layer": layer})
        >>> checkpoint = checkpointer.save_checkpoint()
        >>> _ = open(checkpoint.paramfiles["layer"], "wb").write(b"junk")
        >>> checkpointer.recover_if_possible()
        Traceback (most recent call last):
        ...
        ValueError: ...layer.ckpt cannot be loaded as weights ...
        """
        with weights_only_loads():
            try:
                super().load_checkpoint(checkpoint)
            except Exception as error:
                path = failing_file(error)
                if path is None:
                    raise
                # torch's refusal says which global it refused on one line.
                lines = [line.strip() for line in str(error).splitlines()]
                refused = [line for line in lines if "Unpickler error" in line]
                reason = (refused or lines or [type(error).__name__])[0]
                raise ValueError(
                    f"{path} cannot be loaded as weights ({reason}): the "
                    "checkpoint is damaged, or holds code, which is never "
                    "run; delete that checkpoint folder to resume from an "
                    "earlier one, or train again"
                ) from error
