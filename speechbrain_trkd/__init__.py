"""Triage knowledge distillation (TRKD) for SpeechBrain speaker models.

Modules
-------
losses
    ``trkd_loss``, ``triage_partition``, the KD baselines and the
    ``DistillationLoss`` registry wrapper used from YAML.
schedules
    Tau curricula, pure functions of the optimizer step.
teacher
    ``FrozenTeacher`` and the teacher-to-student class alignment.
brain
    ``DistillationBrain``, a ``speechbrain.core.Brain`` for distillation.
scoring
    EER, minDCF, cosine, AS-norm and PLDA scoring.
teacher_cache
    The teacher's embeddings of fixed crops, computed once and memory-mapped.
run_identity
    Refuses to resume a run whose training settings changed.
run_lock
    One run per output folder.
plots
    DET curves, score histograms and training curves (with matplotlib).
onnx_export
    ONNX export, int8 quantisation and the shared feature function.
synthetic
    A deterministic synthetic speaker corpus in VoxCeleb layout.

Authors
 * speechbrain-trkd developers 2026
"""

__version__ = "0.1.0"
