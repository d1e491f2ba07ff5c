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
synthetic
    A deterministic synthetic speaker corpus in VoxCeleb layout.
"""

__version__ = "0.1.0"
