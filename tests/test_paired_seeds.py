"""A seed pairs the methods: every method's student starts from the same
weights and sees the same batches, in the same order, of the same
(augmented) cached views, so that differences between methods can be read
seed by seed."""

import hashlib
from pathlib import Path

from recipe_runner import RECIPE_ROWS, TRAIN_TRKD, row_id

from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.training_run import run_script

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes/VoxCeleb/TRKD"


def digest(*tensors):
    """A short hash of tensors' bytes."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().float().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


def test_a_seed_gives_every_method_the_same_start_batches_and_views(
    recipe_runner, tmp_path, monkeypatch
):
    """Runs the recipe in-process with no KD, KD, DKD, GKD and TRKD from one
    augmented teacher cache; records the student's initial weights and each
    training batch's ids and waveforms."""
    seen = {}
    fit_batch = DistillationBrain.fit_batch
    on_fit_start = DistillationBrain.on_fit_start

    def record_start(brain):
        model = brain.modules.embedding_model
        seen[brain.hparams.kd_method].append(
            digest(*model.state_dict().values())
        )
        return on_fit_start(brain)

    def record_batch(brain, batch):
        seen[brain.hparams.kd_method].append(
            (tuple(batch.id), digest(batch.sig.data))
        )
        return fit_batch(brain, batch)

    monkeypatch.setattr(DistillationBrain, "on_fit_start", record_start)
    monkeypatch.setattr(DistillationBrain, "fit_batch", record_batch)
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    ours = [
        f"--teacher_cache={tmp_path / 'cache'}",
        "--teacher_cache_augment=True",
        "--teacher_cache_views=3",
        "--wav_augment=null",
        "--number_of_epochs=2",
        "--shuffle=True",
        "--write_plots=False",
    ]
    keys = {flag.split("=")[0] for flag in ours}
    base = [
        str(RECIPE_DIR.parents[2] / row["Hparam_file"]),
        *(
            flag
            for flag in recipe_runner.corpus_flags(row["test_debug_flags"])
            if flag.split("=")[0] not in keys
        ),
        *ours,
    ]
    for method in ("none", "kd", "dkd", "gkd", "trkd"):
        seen[method] = []
        run_script(
            TRAIN_TRKD,
            [
                *base,
                f"--kd_method={method}",
                f"--output_folder={tmp_path / method}",
                # GKD's primary group: 1/8 of 6 classes would be none.
                "--kd_method_options={gkd: {hcm_n: 2}}",
            ],
        )
    reference = seen["none"]
    assert len(reference) > 3  # the start, then several batches
    assert len({ids for ids, _ in reference[1:]}) > 1, "batches should vary"
    for method in ("kd", "dkd", "gkd", "trkd"):
        assert seen[method] == reference, method
