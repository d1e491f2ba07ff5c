"""Triage knowledge distillation (TRKD) for SpeechBrain speaker models.

Modules
-------
losses
    One file per KD method (``trkd``, ``kd``, ``dkd``, ``gkd``, ...), the
    name-to-class registry and the ``DistillationLoss`` used from YAML.
schedules
    Tau curricula, pure functions of the optimizer step.
teacher
    ``FrozenTeacher`` and the teacher-to-student class alignment.
pretrained, teacher_loading
    Pretrained model folders read as data: pins, Hub revisions, sizes held
    by the weights; a run's teacher loaded and aligned from its folder.
robust_brain, speaker_brain, brain
    SpeechBrain's ``Brain`` with the fixes long runs need; the Brain of a
    speaker encoder (the teacher's); ``DistillationBrain``.
data, corpus_cache, cache_views, teacher_cache
    Datasets and crops; the teacher cache of a prepared corpus, its
    augmented views regenerated from a seed, and its storage.
training_run, run_identity, run_lock, checkpoints
    Opening a run: hparams, checks before any work, one run per folder,
    no resume under other settings, weights-only checkpoints.
evaluation, embeddings, verification, scoring, metrics, trials
    Scoring a trained encoder: embeddings, backends, EER and minDCF, trial
    lists and score files.
export, onnx_export
    The pretrained-model folder and its card; ONNX and int8.
plots, training_plots, teacher_signal, markdown
    DET curves, score histograms, training curves, the teacher-signal
    report, tables.
synthetic, synthetic_voice
    A deterministic synthetic speaker corpus in VoxCeleb layout.

Authors
 * speechbrain-trkd developers 2026
"""

import logging

__version__ = "0.1.0"


class _DropNotes(logging.Filter):
    """Drops SpeechBrain log records that start with one of ``notes``."""

    def __init__(self, *notes):
        super().__init__()
        self.notes = notes

    def filter(self, record):
        return not str(record.msg).startswith(self.notes)


# Two SpeechBrain notes that mislead in every run of this package: its
# train logger cannot save figures without torchvision (ours are drawn with
# matplotlib), and load_or_create loads the label file into the encoder it
# has just filled ("Load called, but CategoricalEncoder is not empty").
logging.getLogger("speechbrain.utils.train_logger").addFilter(
    _DropNotes("torchvision is not available")
)
logging.getLogger("speechbrain.dataio.encoder").addFilter(
    _DropNotes("Load called, but CategoricalEncoder is not empty")
)
