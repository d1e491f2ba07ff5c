#!/usr/bin/env python3
"""Train or adapt a teacher and save it as a pretrained-model folder.

Two uses, one script:

* A new corpus (e.g. openspk): its training speakers are not in the Hub
  teacher's label encoder, so a new AAM head is fine-tuned for them on top of
  the pretrained ECAPA-TDNN, with the backbone frozen (default) or trained at
  a lower learning rate (``--freeze_backbone=False --backbone_lr_scale=0.1``)::

    python train_teacher.py hparams/finetune_teacher.yaml \\
        --data_folder=../shared/data/openspk \\
        --teacher_source=../shared/models/spkrec-ecapa-voxceleb

* A teacher of another family trained from scratch (a ResNet), for the
  ResNet-to-ECAPA direction::

    python train_teacher.py hparams/resnet_teacher.yaml --data_folder=...

The result (``export_folder``: hyperparams.yaml, embedding_model.ckpt,
classifier.ckpt, the label encoder, README.md) is a teacher that
``train_trkd.py`` loads through the same ``Pretrainer`` path as the Hub
model, sized from its weights: ``--teacher_source=<export_folder>``.
The teacher's EER on the verification lists is reported and saved.

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
from speechbrain_trkd.corpus_cache import (
    open_teacher_cache,
    refuse_augmented_cache,
)
from speechbrain_trkd.data import build_wav_augment, dataio_prep
from speechbrain_trkd.evaluation import score_encoder, student_encoder
from speechbrain_trkd.export import export_model, teacher_card
from speechbrain_trkd.pretrained import collect_pinned, load_collected
from speechbrain_trkd.run_identity import check_same_segments
from speechbrain_trkd.speaker_brain import SpeakerBrain
from speechbrain_trkd.teacher_loading import backbone_embedder
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
            pretrainer = hparams.get("pretrainer")

            # With a frozen backbone, its embeddings of fixed crops can be
            # computed once (teacher_cache) and only the head is trained.
            cache = None
            if hparams.get("teacher_cache"):
                refuse_augmented_cache(wav_augment, "backbone")
                if not hparams["freeze_backbone"]:
                    raise ValueError(
                        "teacher_cache needs a frozen backbone "
                        "(--freeze_backbone=True): the cache holds its "
                        "embeddings, which fine-tuning would change"
                    )
                cache = open_teacher_cache(
                    hparams["teacher_cache"],
                    [hparams["train_annotation"], hparams["valid_annotation"]],
                    lambda device: backbone_embedder(
                        pretrainer,
                        hparams["teacher_revision"],
                        hparams.get("teacher_sha256"),
                        hparams["compute_features"],
                        hparams["mean_var_norm"],
                        hparams["embedding_model"],
                        hparams["emb_dim"],
                        device,
                    ),
                    run_opts.get("device") or infer_device(),
                    **hparams["teacher_cache_options"],
                )
            train_data, valid_data, _ = dataio_prep(
                hparams["train_annotation"],
                hparams["valid_annotation"],
                hparams["save_folder"],
                n_classes=hparams["out_n_neurons"],
                crop_seconds=hparams["sentence_len"],
                sample_rate=hparams["sample_rate"],
                random_chunk=hparams["random_chunk"],
                cache=cache,
                with_audio=cache is None,
            )
            if pretrainer is not None:
                collect_pinned(pretrainer, hparams["teacher_revision"])
                load_collected(pretrainer, hparams.get("teacher_sha256"))
            brain = SpeakerBrain(
                modules=hparams["modules"],
                opt_class=hparams["opt_class"],
                hparams=hparams,
                run_opts=run_opts,
                checkpointer=hparams["checkpointer"],
                compute_cost=hparams["compute_cost"],
                wav_augment=wav_augment,
                lr_annealing=hparams["lr_annealing"],
                train_logger=hparams["train_logger"],
                freeze_backbone=hparams["freeze_backbone"],
                backbone_lr_scale=hparams["backbone_lr_scale"],
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
    if if_main_process():
        export_model(
            hparams["embedding_model"],
            hparams["classifier"],
            os.path.join(hparams["save_folder"], "label_encoder.txt"),
            hparams["inference_hparams"],
            hparams["inference_overrides"],
            hparams["export_folder"],
            teacher_card(hparams, brain.metrics),
        )
