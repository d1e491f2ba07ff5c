#!/usr/bin/env python3
"""Distil a pretrained speaker-embedding teacher into a small student.

The student is trained on VoxCeleb (or any corpus in its layout) with its own
additive-angular-margin loss plus a knowledge-distillation term from a frozen
teacher. The KD method is a YAML choice: triage KD (``trkd``, the default),
``kd``, ``dkd``, ``gkd``, ``nkd``, ``dist``, ``emb_cos`` or ``none``. After
training, the best checkpoint (lowest validation error) is scored on the
verification lists.

To run::

    python train_trkd.py hparams/ecapa_to_small.yaml --data_folder=/path/to/vox

With a local teacher folder (e.g. one fine-tuned by ``train_teacher.py``;
its sizes are read from its weights)::

    python train_trkd.py hparams/ecapa_to_small.yaml --data_folder=... \\
        --teacher_source=results/teacher/ecapa1024-finetuned/1986/export

Authors
 * speechbrain-trkd developers 2026
"""

import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import (
    if_main_process,
    infer_device,
    run_on_main,
)
from voxceleb_prepare import prepare_voxceleb

from speechbrain_trkd.audio_cache import decoded_corpus, reading_from
from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.corpus_cache import (
    open_teacher_cache,
    refuse_augmented_cache,
)
from speechbrain_trkd.data import build_wav_augment, dataio_prep
from speechbrain_trkd.evaluation import score_encoder, student_encoder
from speechbrain_trkd.export import export_model, student_card
from speechbrain_trkd.run_identity import check_same_segments
from speechbrain_trkd.teacher_loading import (
    check_teacher_speakers,
    load_teacher,
    teacher_embedder,
)
from speechbrain_trkd.training_plots import write_training_plots
from speechbrain_trkd.training_run import training_run

if __name__ == "__main__":
    with training_run(sys.argv[1:]) as (
        hparams,
        run_opts,
        hparams_file,
        overrides,
    ):
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )

        # Data preparation, on the main process.
        run_on_main(prepare_voxceleb, kwargs=hparams["prepare_options"])
        # New trial lists rescore a finished run only if its training
        # segments stay the same.
        run_on_main(
            check_same_segments,
            args=[
                hparams["output_folder"],
                [hparams["train_annotation"], hparams["valid_annotation"]],
            ],
        )

        # The corpus decoded once into audio_cache, when that names a folder.
        audio = decoded_corpus(
            hparams["data_folder"],
            hparams["audio_cache"],
            train_folders=hparams["train_folders"],
        )
        with reading_from(audio):
            wav_augment = build_wav_augment(
                hparams["wav_augment"],
                noise_csv=hparams["noise_csv"],
                rir_csv=hparams["rir_csv"],
                add_noise=hparams["add_noise"],
                add_reverb=hparams["add_reverb"],
            )

            # The teacher's outputs for fixed (optionally augmented) views of
            # every segment, computed once; or the teacher runs online.
            cache = None
            cache_augment = hparams["cache_view_augment"]
            if hparams["teacher_cache"]:
                refuse_augmented_cache(wav_augment)
                # A teacher that cannot align to the training speakers is
                # refused before its cache is built.
                if hparams["kd_loss"].distils:
                    check_teacher_speakers(
                        hparams["pretrainer"],
                        hparams["teacher_revision"],
                        hparams["train_annotation"],
                        hparams["teacher_source"],
                    )
                cache = open_teacher_cache(
                    hparams["teacher_cache"],
                    [hparams["train_annotation"], hparams["valid_annotation"]],
                    lambda device: teacher_embedder(
                        hparams["pretrainer"],
                        hparams["teacher_revision"],
                        hparams["teacher_sha256"],
                        hparams["teacher"],
                        device,
                    ),
                    run_opts.get("device") or infer_device(),
                    **hparams["teacher_cache_options"],
                    augment=cache_augment,
                )
            train_data, valid_data, label_encoder = dataio_prep(
                hparams["train_annotation"],
                hparams["valid_annotation"],
                hparams["save_folder"],
                n_classes=hparams["out_n_neurons"],
                crop_seconds=hparams["sentence_len"],
                sample_rate=hparams["sample_rate"],
                random_chunk=hparams["random_chunk"],
                cache=cache,
                cache_augment=cache_augment,
            )

            # The teacher, aligned to the student's speakers (none without KD).
            teacher = None
            if hparams["kd_loss"].distils:
                teacher = load_teacher(
                    hparams["pretrainer"],
                    hparams["teacher"],
                    label_encoder,
                    revision=hparams["teacher_revision"],
                    sha256=hparams["teacher_sha256"],
                    source=hparams["teacher_source"],
                    n_classes=hparams["teacher_n_classes"],
                )

            # The learning rate moves per epoch, or per step with lr_per_step.
            per_step = hparams["lr_per_step"]
            brain = DistillationBrain(
                modules=hparams["modules"],
                opt_class=hparams["opt_class"],
                hparams=hparams,
                run_opts=run_opts,
                checkpointer=hparams["checkpointer"],
                teacher=teacher,
                kd_loss=hparams["kd_loss"],
                compute_cost=hparams["compute_cost"],
                kd_weight=hparams["kd_weight"],
                kd_warmup_epochs=hparams["kd_warmup_epochs"],
                kd_scale=hparams["kd_scale"],
                kd_margin=hparams["kd_margin"],
                tau_schedule=hparams["tau_schedule"],
                wav_augment=wav_augment,
                lr_annealing=None if per_step else hparams["lr_annealing"],
                lr_step_schedule=hparams["lr_step_schedule"]
                if per_step
                else None,
                lr_warmup_epochs=hparams["lr_warmup_epochs"]
                if per_step
                else 0.0,
                train_logger=hparams["train_logger"],
            )
            brain.fit(
                hparams["epoch_counter"],
                train_data,
                valid_data,
                train_loader_kwargs=hparams["train_dataloader_options"],
                valid_loader_kwargs=hparams["valid_dataloader_options"],
            )

            # The best checkpoint (validation error), scored and exported.
            brain.checkpointer.recover_if_possible(min_key="ErrorRate")
            brain.metrics = None
            if if_main_process():
                brain.metrics = score_encoder(
                    student_encoder(brain),
                    brain.device,
                    **hparams["scoring_options"],
                )
                if hparams["write_plots"]:
                    write_training_plots(
                        hparams["train_log"],
                        hparams["output_folder"],
                        hparams["tau_schedule"]
                        if hparams["kd_loss"].uses_tau
                        else None,
                    )
    if if_main_process():
        export_model(
            hparams["embedding_model"],
            hparams["classifier"],
            os.path.join(hparams["save_folder"], "label_encoder.txt"),
            hparams["inference_hparams"],
            hparams["inference_overrides"],
            hparams["export_folder"],
            student_card(hparams, brain.metrics),
        )
