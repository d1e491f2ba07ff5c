"""The teacher-output cache: parity with the online teacher, manifest
checks, resume after an interruption, and recipe runs from a cache."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_runner import RECIPE_ROWS, row_id
from speechbrain.augment.augmenter import Augmenter
from speechbrain.augment.time_domain import (
    AddNoise,
    DropChunk,
    DropFreq,
    pink_noise_like,
)
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from speechbrain.processing.features import InputNormalization

import speechbrain_trkd.data as data_module
from speechbrain_trkd.brain import DistillationBrain
from speechbrain_trkd.cache_identity import CHECKED_FIELDS
from speechbrain_trkd.cache_views import (
    SeededCsvNoise,
    SeededCsvReverb,
    ViewAugmentation,
)
from speechbrain_trkd.losses import DistillationLoss
from speechbrain_trkd.teacher import FrozenTeacher
from speechbrain_trkd.teacher_cache import (
    MANIFEST_FILE,
    PROGRESS_FILE,
    TeacherCache,
    build_teacher_cache,
)

RATE = 16000
CROP = 0.5
RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes/VoxCeleb/TRKD"


def speaker_model(channels, n_classes, seed):
    """A small ECAPA speaker model (features to cosine scores)."""
    torch.manual_seed(seed)
    return {
        "compute_features": Fbank(n_mels=24),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": ECAPA_TDNN(
            24, channels=[channels] * 4 + [3 * channels], lin_neurons=16
        ),
        "classifier": Classifier(16, out_neurons=n_classes),
    }


def make_teacher():
    """A frozen random teacher with 7 classes, aligned to 5 student ones."""
    teacher = FrozenTeacher(**speaker_model(16, 7, seed=0))
    teacher.set_class_index([6, 0, 3, 2, 5])
    return teacher


def make_segments(n=6):
    """Segments of one long random waveform per id, of varied lengths."""
    generator = torch.Generator().manual_seed(1)
    audio = {
        f"spk{i % 5}/s/u{i}": torch.randn(RATE * 2, generator=generator)
        for i in range(n)
    }
    segments = [
        {"id": sid, "start": 0, "stop": RATE + 1000 * i}
        for i, sid in enumerate(audio)
    ]
    segments.append({"id": "short", "start": 10, "stop": 10 + RATE // 4})
    audio["short"] = torch.randn(RATE, generator=generator)
    return segments, audio


def options(**changes):
    """The manifest options of the tests' caches."""
    base = {
        "teacher_sha256": {"embedding_model.ckpt": "ab" * 32},
        "prepare_options": {"seg_dur": 3.0},
        "views": 3,
        "seed": 7,
        "crop_seconds": CROP,
        "sample_rate": RATE,
        "precision": "fp32",
        "source_files": {"a.wav": [32000, 1]},
    }
    base.update(changes)
    return base


def build(folder, teacher, segments, audio, **kwargs):
    """Builds a cache of the test segments with the teacher's embed."""
    return build_teacher_cache(
        str(folder),
        segments,
        kwargs.pop("embed_fn", teacher.embed),
        lambda segment, start, stop: audio[segment["id"]][start:stop],
        kwargs.pop("options", options()),
        16,
        batch_size=4,
        **kwargs,
    )


def view_augmentation(snr_low=5, clean_views=1, files=None):
    """Noise (white or pink), band and chunk drop, one or two per view;
    with ``files`` (a folder), also noise and reverberation from CSVs of
    files written there."""
    augmentations = [
        AddNoise(snr_low=snr_low, snr_high=20),
        AddNoise(snr_low=5, snr_high=20, noise_funct=pink_noise_like),
        DropFreq(),
        DropChunk(drop_length_low=100, drop_length_high=400),
    ]
    if files is not None:
        augmentations += [
            SeededCsvNoise(write_csv(files, "noise", 3, RATE // 3)),
            SeededCsvReverb(write_csv(files, "rir", 2, 400)),
        ]
    return ViewAugmentation(
        Augmenter(
            shuffle_augmentations=True,
            min_augmentations=1,
            max_augmentations=3,
            augmentations=augmentations,
        ),
        clean_views=clean_views,
        seed=options()["seed"],
    )


def write_csv(folder, name, n_files, samples):
    """A SpeechBrain CSV of ``n_files`` decaying noises of ``samples``."""
    os.makedirs(folder, exist_ok=True)
    generator = torch.Generator().manual_seed(len(name))
    lines = ["ID,wav"]
    for index in range(n_files):
        path = os.path.join(folder, f"{name}{index}.wav")
        decay = torch.exp(-torch.arange(samples) / (samples / 4))
        signal = torch.randn(1, samples, generator=generator) * decay / 4
        sb.dataio.audio_io.save(path, signal, RATE, subtype="FLOAT")
        lines.append(f"{name}{index},{path}")
    csv_file = os.path.join(folder, f"{name}.csv")
    with open(csv_file, "w", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    return csv_file


def test_cached_logits_equal_online_logits(tmp_path):
    """The teacher's logits from a cached embedding equal its logits on the
    same crop online, within 1e-5, for every view of every segment."""
    teacher = make_teacher()
    segments, audio = make_segments()
    cache = build(tmp_path, teacher, segments, audio)
    worst = 0.0
    for segment in segments:
        row = cache.row(segment["id"])
        for view in range(cache.views):
            start, stop = cache.offsets(row)[view]
            wav = audio[segment["id"]][start:stop].unsqueeze(0)
            _, online = teacher(wav, torch.ones(1))
            cached = teacher.classify(
                torch.from_numpy(cache.embedding(row, view)).unsqueeze(0)
            )
            worst = max(worst, (online - cached).abs().max().item())
    assert worst < 1e-5


def test_views_are_reproducible_and_inside_their_segment(tmp_path):
    """Two builds give the same crops; crops lie in their segments and
    have the crop length (or the whole of a shorter segment)."""
    teacher = make_teacher()
    segments, audio = make_segments()
    first = build(tmp_path / "a", teacher, segments, audio)
    second = build(tmp_path / "b", teacher, segments[::-1][::-1], audio)
    for segment in segments:
        offsets = first.offsets(first.row(segment["id"]))
        assert (offsets == second.offsets(second.row(segment["id"]))).all()
        assert (offsets[:, 0] >= segment["start"]).all()
        assert (offsets[:, 1] <= segment["stop"]).all()
        lengths = offsets[:, 1] - offsets[:, 0]
        want = min(int(CROP * RATE), segment["stop"] - segment["start"])
        assert (lengths == want).all()
    long_views = first.offsets(first.row(segments[3]["id"]))
    assert len(set(long_views[:, 0].tolist())) > 1, "views should differ"


@pytest.mark.parametrize("with_files", [False, True])
def test_augmented_views_are_what_the_teacher_labelled(
    tmp_path, monkeypatch, with_files
):
    """With an augmentation (with noise and reverberation files when
    ``with_files``), the teacher's logits on each view rebuilt by the
    training loader (the recipe's dataset, read in a fresh order) equal the
    cached ones within 1e-5; augmented views differ from their clean crops,
    clean views do not."""
    import speechbrain_trkd.cache_views as cache_views

    reads = []
    seeded_file = cache_views._seeded_file
    monkeypatch.setattr(
        cache_views,
        "_seeded_file",
        lambda paths: reads.append(paths) or seeded_file(paths),
    )
    teacher = make_teacher()
    segments, audio = make_segments()
    augment = view_augmentation(
        files=tmp_path / "noises" if with_files else None
    )
    cache = build(tmp_path, teacher, segments, audio, augment=augment)
    assert cache.manifest["augmentation"] == augment.settings()
    paths = {}
    for segment in segments:
        paths[segment["id"]] = str(tmp_path / f"{len(paths)}.wav")
        sb.dataio.audio_io.save(
            paths[segment["id"]],
            audio[segment["id"]].unsqueeze(0),
            RATE,
            subtype="FLOAT",
        )
    data = sb.dataio.dataset.DynamicItemDataset(
        {s["id"]: {"wav": paths[s["id"]]} for s in segments}
    )
    valid = sb.dataio.dataset.DynamicItemDataset(dict(data.data))
    data_module.add_cached_views(data, valid, cache, RATE, augment)
    data.set_output_keys(["sig", "teacher_emb"])
    worst, changed = 0.0, 0
    for index, segment in reversed(list(enumerate(segments))):
        row = cache.row(segment["id"])
        for view in reversed(range(cache.views)):
            # The loader draws the view at random: here, each in turn.
            monkeypatch.setattr(
                data_module.random, "randrange", lambda n, view=view: view
            )
            item = data[index]
            start, stop = cache.offsets(row)[view]
            clean = audio[segment["id"]][start:stop]
            differs = not torch.allclose(item["sig"], clean, atol=1e-4)
            assert differs == (view >= 1), (segment["id"], view)
            changed += differs
            _, online = teacher(item["sig"].unsqueeze(0), torch.ones(1))
            cached = teacher.classify(item["teacher_emb"].unsqueeze(0))
            worst = max(worst, (online - cached).abs().max().item())
    assert changed == 2 * len(segments) and worst < 1e-5
    assert bool(reads) == with_files  # the files were used


def test_two_augmented_builds_are_identical(tmp_path):
    """The same inputs and augmentation give the same bytes."""
    teacher = make_teacher()
    segments, audio = make_segments(4)
    for name in ("a", "b"):
        build(
            tmp_path / name,
            teacher,
            segments,
            audio,
            augment=view_augmentation(),
        )
    for name in (
        "embeddings.npy",
        "offsets.npy",
        "segments.txt",
        MANIFEST_FILE,
    ):
        assert (tmp_path / "a" / name).read_bytes() == (
            tmp_path / "b" / name
        ).read_bytes(), name


def test_changed_augmentation_is_refused_naming_the_setting(tmp_path):
    """A cache built with one augmentation cannot be read or rebuilt with
    another, nor without one; the message names the setting."""
    teacher = make_teacher()
    segments, audio = make_segments(2)
    build(tmp_path, teacher, segments, audio, augment=view_augmentation())
    setting = "augmentation.augmenter.augmentations.AddNoise0.snr_low"
    with pytest.raises(ValueError, match=rf"built with {setting}=5, .*=0"):
        build(
            tmp_path,
            teacher,
            segments,
            audio,
            augment=view_augmentation(snr_low=0),
        )
    with pytest.raises(ValueError, match="augmentation.clean_views=1, .*=2"):
        build(
            tmp_path,
            teacher,
            segments,
            audio,
            augment=view_augmentation(clean_views=2),
        )
    with pytest.raises(ValueError, match=r"built with augmentation="):
        build(tmp_path, teacher, segments, audio)


def test_a_length_changing_augmenter_is_refused():
    """Speed perturbation changes a view's length: it is named."""
    from speechbrain.augment.time_domain import SpeedPerturb

    augment = ViewAugmentation(
        Augmenter(augmentations=[SpeedPerturb(RATE, speeds=[90])]), 0
    )
    with pytest.raises(ValueError, match="must keep its crop's length"):
        augment(torch.randn(RATE), "s", 0)


def batch_of(audio, cache, segments, with_cache, augment=None):
    """A padded batch of view 1 of each segment, with or without cached
    teacher embeddings (augmented as the cache's views when given)."""
    items = []
    for index, segment in enumerate(segments):
        row = cache.row(segment["id"])
        start, stop = cache.offsets(row)[1]
        sig = audio[segment["id"]][start:stop]
        item = {
            "id": segment["id"],
            "sig": augment(sig, segment["id"], 1) if augment else sig,
            "spk_id_encoded": torch.LongTensor([index % 5]),
        }
        if with_cache:
            item["teacher_emb"] = torch.from_numpy(cache.embedding(row, 1))
        items.append(item)
    return PaddedBatch(items)


@pytest.mark.parametrize("augmented", [False, True])
@pytest.mark.parametrize("method", ["kd", "dkd", "trkd", "emb_cos"])
def test_one_batch_gives_the_same_loss_both_ways(tmp_path, method, augmented):
    """DistillationBrain's training loss on one batch (of augmented views
    when ``augmented``) is the same with the teacher online and with its
    cached embeddings; the cached path never runs the teacher's network."""
    teacher = make_teacher()
    segments, audio = make_segments()
    segments = segments[:5]  # equal-length crops: no padding
    augment = view_augmentation() if augmented else None
    cache = build(tmp_path, teacher, segments, audio, augment=augment)
    brain = DistillationBrain(
        modules=speaker_model(8, 5, seed=3),
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
        run_opts={"device": "cpu", "noprogressbar": True},
        teacher=teacher,
        kd_loss=DistillationLoss(method),
        kd_weight=1.0,
        compute_cost=LogSoftmaxWrapper(
            AdditiveAngularMargin(margin=0.2, scale=30)
        ),
    )
    brain.modules.eval()  # the student's batch norm: same both ways
    losses = {}
    for with_cache in (False, True):
        batch = batch_of(audio, cache, segments, with_cache, augment)
        if with_cache:

            def refuse(*args):
                raise AssertionError("the teacher network ran")

            handle = teacher.embedding_model.register_forward_pre_hook(refuse)
        with torch.no_grad():
            predictions = brain.compute_forward(batch, sb.Stage.TRAIN)
            losses[with_cache] = brain.compute_objectives(
                predictions, batch, sb.Stage.TRAIN
            )
        if with_cache:
            handle.remove()
    assert torch.allclose(losses[False], losses[True], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field", CHECKED_FIELDS)
def test_manifest_mismatch_names_the_field(tmp_path, field):
    """Loading (or rebuilding) a cache with other inputs fails, naming
    the field that differs."""
    teacher = make_teacher()
    segments, audio = make_segments(3)
    build(tmp_path, teacher, segments, audio)
    changed = {
        "teacher_sha256": {"embedding_model.ckpt": "cd" * 32},
        "prepare_options": {"seg_dur": 2.0},
        "views": 2,
        "seed": 8,
        "crop_seconds": 0.25,
        "sample_rate": 8000,
        "precision": "bf16",
        "augmentation": view_augmentation().settings(),
        "source_files": {"a.wav": [32000, 2]},
    }[field]
    # The audio files are named by path, the other fields by name.
    named = (
        "1 of its 1 files differ.*a.wav"
        if field == "source_files"
        else (rf"built with {field}[.=]")
    )
    with pytest.raises(ValueError, match=named):
        TeacherCache(str(tmp_path), expected=options(**{field: changed}))
    kwargs = {"options": options(**{field: changed})}
    if field == "augmentation":
        kwargs = {"augment": view_augmentation()}
    with pytest.raises(ValueError, match=named):
        build(tmp_path, teacher, segments, audio, **kwargs)


class Interrupt(Exception):
    """Stands for a kill in the middle of a build."""


def test_interrupted_build_resumes_and_is_never_used_half_written(tmp_path):
    """A build killed half-way leaves no manifest: loading it fails and
    says to resume; the next build embeds only the rows left and gives
    the same cache as an uninterrupted build."""
    teacher = make_teacher()
    segments, audio = make_segments(8)
    reference = build(tmp_path / "ref", teacher, segments, audio)
    calls = []

    def dying_embed(wavs, lens):
        calls.append(wavs.shape[0])
        if len(calls) == 4:
            raise Interrupt
        return teacher.embed(wavs, lens)

    folder = tmp_path / "cache"
    with pytest.raises(Interrupt):
        build(
            folder,
            teacher,
            segments,
            audio,
            embed_fn=dying_embed,
            rows_per_save=2,
        )
    assert not (folder / MANIFEST_FILE).exists()
    with open(folder / PROGRESS_FILE) as fin:
        done = json.load(fin)["rows_done"]
    assert 0 < done < len(segments)
    with pytest.raises(FileNotFoundError, match="unfinished build"):
        TeacherCache(str(folder))

    embedded = []

    def counting_embed(wavs, lens):
        embedded.append(wavs.shape[0])
        return teacher.embed(wavs, lens)

    cache = build(
        folder,
        teacher,
        segments,
        audio,
        embed_fn=counting_embed,
        rows_per_save=2,
    )
    assert sum(embedded) == (len(segments) - done) * cache.views
    assert not (folder / PROGRESS_FILE).exists()
    for segment in segments:
        row = cache.row(segment["id"])
        for view in range(cache.views):
            np.testing.assert_allclose(
                cache.embedding(row, view),
                reference.embedding(reference.row(segment["id"]), view),
                rtol=1e-5,
                atol=1e-6,
            )


def test_unknown_segment_is_named(tmp_path):
    """Reading a segment the cache does not hold names it."""
    teacher = make_teacher()
    segments, audio = make_segments(2)
    cache = build(tmp_path, teacher, segments, audio)
    with pytest.raises(KeyError, match="spk9/s/u9"):
        cache.row("spk9/s/u9")


def test_a_truncated_cache_array_is_named(tmp_path):
    """A finished cache whose embeddings file was cut short is refused,
    naming the folder and the files (it was a raw "mmap length is greater
    than file size")."""
    from speechbrain_trkd.teacher_cache import EMBEDDINGS_FILE, TeacherCache

    teacher = make_teacher()
    segments, audio = make_segments(2)
    build(tmp_path, teacher, segments, audio)
    path = tmp_path / EMBEDDINGS_FILE
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(
        ValueError,
        match=rf"{tmp_path}.*{EMBEDDINGS_FILE}.*"
        "damaged: delete the folder",
    ):
        TeacherCache(str(tmp_path))


def recipe_row(stem):
    """The recipe test row of an hparams file."""
    return next(r for r in RECIPE_ROWS if row_id(r) == stem)


def test_recipe_distils_from_a_cache_then_reuses_it(recipe_runner, tmp_path):
    """train_trkd.py builds the cache once, distils from it, and a second
    run (another method) reuses it; with augmentation on it refuses."""
    cache = tmp_path / "teacher_cache"
    row = recipe_row("ecapa_to_small")
    # bf16 with no --device: the cache is built where the Brain would run.
    flags = (
        f"--teacher_cache={cache}",
        "--teacher_cache_precision=bf16",
        "--wav_augment=null",
    )
    recipe_runner.run(row, name="cache_kd", extra_flags=flags)
    manifest = json.loads((cache / MANIFEST_FILE).read_text())
    assert manifest["views"] == 2 and manifest["crop_seconds"] == 0.5
    assert manifest["precision"] == "bf16"
    assert set(manifest["teacher_sha256"]) == {
        "embedding_model.ckpt",
        "classifier.ckpt",
        "label_encoder.ckpt",
    }
    stamp = os.path.getmtime(cache / "embeddings.npy")
    recipe_runner.run(
        row, name="cache_dkd", extra_flags=(*flags, "--kd_method=dkd")
    )
    assert os.path.getmtime(cache / "embeddings.npy") == stamp
    with pytest.raises(pytest.fail.Exception):
        recipe_runner.run(row, name="cache_augment", extra_flags=flags[:2])
    log = recipe_runner.root / "cache_augment" / "log.txt"
    assert "pass --wav_augment=null" in log.read_text()


def test_a_teacher_of_other_speakers_is_refused_before_its_cache(
    recipe_runner, tmp_path
):
    """A teacher that knows none of the training speakers stops the run
    before the cache is built (it used to fail only after the build)."""
    row = recipe_row("ecapa_to_small")
    recipe_runner.run(row)  # prepares the corpus
    prep = Path(recipe_runner.values["prep_folder"])
    for split in ("train", "dev"):
        text = (prep / f"{split}.csv").read_text().replace(",spk0", ",other0")
        (tmp_path / f"{split}.csv").write_text(text)
    cache = tmp_path / "teacher_cache"
    with pytest.raises(pytest.fail.Exception):
        recipe_runner.run(
            row,
            name="cache_other_speakers",
            extra_flags=(
                f"--teacher_cache={cache}",
                "--wav_augment=null",
                "--skip_prep=True",
                f"--train_annotation={tmp_path / 'train.csv'}",
                f"--valid_annotation={tmp_path / 'dev.csv'}",
            ),
        )
    log = recipe_runner.root / "cache_other_speakers" / "log.txt"
    assert "does not know these training speakers" in log.read_text()
    assert not (cache / "embeddings.npy").exists()


def test_teacher_head_trains_from_a_cache(recipe_runner, tmp_path):
    """train_teacher.py fine-tunes a head on a frozen backbone from the
    cache, and exports a teacher."""
    backbone = recipe_runner.teacher_export("finetune_teacher")
    row = dict(recipe_row("finetune_teacher"))
    row["test_debug_flags"] = row["test_debug_flags"].replace(
        "--pretrainer=null --freeze_backbone=False", ""
    )
    assert "pretrainer" not in row["test_debug_flags"]
    recipe_runner.run(
        row,
        name="teacher_from_cache",
        extra_flags=(
            f"--teacher_cache={tmp_path / 'backbone_cache'}",
            "--wav_augment=null",
            f"--teacher_source={backbone}",
        ),
    )
    assert (tmp_path / "backbone_cache" / MANIFEST_FILE).is_file()


def test_recipe_views_take_noise_and_reverberation_files(tmp_path):
    """With noise_csv and rir_csv, the recipe's view augmentation adds the
    seeded file noise and reverberation to its own augmentations."""
    files = tmp_path / "files"
    overrides = {
        "data_folder": str(tmp_path),
        "teacher_cache_augment": True,
        "noise_csv": write_csv(files, "noise", 2, 800),
        "rir_csv": write_csv(files, "rir", 2, 200),
    }
    with open(RECIPE_DIR / "hparams" / "ecapa_to_small.yaml") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    augment = hparams["cache_view_augment"]
    kinds = [
        type(module).__name__
        for module in augment.augmenter.augmentations.values()
    ]
    assert kinds[-2:] == ["SeededCsvNoise", "SeededCsvReverb"]
    assert len(kinds) == 6
    wav = torch.randn(RATE)
    assert torch.equal(augment(wav, "s", 1), augment(wav, "s", 1))


def test_a_second_build_of_one_cache_at_once_is_refused(tmp_path):
    """While one process builds a cache, another build of it stops with a
    message naming the holder and what to do; the cache is left to the
    first."""
    from speechbrain_trkd.run_lock import RunLock

    teacher = make_teacher()
    segments, audio = make_segments(2)
    with RunLock(str(tmp_path)):  # this process stands for the first build
        with pytest.raises(RuntimeError, match="wait for that build to end"):
            build(tmp_path, teacher, segments, audio)
    assert not (tmp_path / MANIFEST_FILE).exists()
    cache = build(tmp_path, teacher, segments, audio)  # the lock is free
    assert cache.views == 3 and not (tmp_path / "run.lock").exists()


def test_a_cache_of_changed_audio_is_refused(tmp_path):
    """Audio overwritten after the build with other audio of the same size
    makes the cache refuse the run, naming the first changed file and how
    many changed (the segment ids alone would still match)."""
    import soundfile

    from speechbrain_trkd.corpus_cache import cache_teacher_outputs
    from speechbrain_trkd.synthetic import make_synthetic_corpus

    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=2,
        n_dev_speakers=2,
        sessions_per_speaker=2,
        utterances_per_session=2,
        duration=(1.0, 1.5),
    )
    segments = corpus.training_csv(str(tmp_path / "segments.csv"))
    weights = tmp_path / "teacher.ckpt"
    torch.save({}, weights)

    def embedder(device):
        return (lambda wavs, lens: wavs[:, None, :8]), [str(weights)], 8

    def open_cache():
        cache_teacher_outputs(
            str(tmp_path / "cache"),
            [segments],
            embedder,
            "cpu",
            views=2,
            seed=1,
            precision="fp32",
            batch_size=4,
            crop_seconds=0.5,
            sample_rate=RATE,
        )

    open_cache()
    open_cache()  # unchanged audio: the cache is used as it is
    with open(segments, encoding="utf-8") as fin:
        wavs = sorted({row.split(",")[2] for row in list(fin)[1:]})
    for path in wavs[1:3]:
        size = os.path.getsize(path)
        samples, rate = soundfile.read(path, dtype="float32")
        soundfile.write(path, samples[::-1].copy(), rate, subtype="PCM_16")
        assert os.path.getsize(path) == size
        os.utime(path, ns=(os.stat(path).st_atime_ns, 10**18))
    with pytest.raises(ValueError, match=f"2 of its {len(wavs)} files") as err:
        open_cache()
    assert wavs[1] in str(err.value)
