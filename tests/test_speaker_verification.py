"""Tests of speaker verification: the plugin's embedding, cohorts, backends
and report (speechbrain_trkd.verification), its pinned weights-only loading
of model folders (speechbrain_trkd.pretrained), and the recipe's command
line (speaker_verification.py)."""

import csv
import importlib.util
import json
import math
import shutil
import time
from pathlib import Path

import numpy
import pytest
import soundfile
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_trkd import embeddings, pretrained, verification
from speechbrain_trkd.cache_identity import file_sha256
from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.trials import read_trials

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "VoxCeleb" / "TRKD"
SHARED = REPO.parent / "shared"
TEACHER = SHARED / "models" / "spkrec-ecapa-voxceleb"
OPENSPK = SHARED / "data" / "openspk"

_spec = importlib.util.spec_from_file_location(
    "speaker_verification", RECIPE / "speaker_verification.py"
)
sv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sv)

SAMPLE_RATE = 16000
FRAME = 256


def spectral_encoder(wavs, wav_lens):
    """Toy encoder: mean band energies over the whole frames of each signal.

    Frames start at sample 0, so the frames inside a signal's true length
    do not depend on the padding: batching cannot change the result.
    """
    frames = wavs.unfold(1, FRAME, FRAME)  # [B, n_frames, FRAME]
    spectrum = torch.fft.rfft(frames).abs()[..., 1:65]  # 62.5 Hz bins
    bands = spectrum.reshape(*spectrum.shape[:2], 32, 2).mean(-1).log1p()
    n_valid = torch.round(wav_lens * wavs.shape[1]).long() // FRAME
    mask = torch.arange(frames.shape[1], device=wavs.device) < n_valid[:, None]
    emb = (bands * mask[..., None]).sum(1) / n_valid[:, None]
    return emb.unsqueeze(1)  # [B, 1, 32]


def speaker_signal(rng, f0, seconds):
    """A harmonic tone at f0 with random phases, amplitudes and noise."""
    t = numpy.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    harmonics = numpy.arange(1, 6)[:, None]
    phases = rng.uniform(0, 2 * numpy.pi, (5, 1))
    amps = rng.uniform(0.5, 1.0, (5, 1)) / harmonics
    tone = (amps * numpy.sin(2 * numpy.pi * f0 * harmonics * t + phases)).sum(0)
    noise = rng.normal(0.0, 0.05, t.size)
    return (0.2 * tone + noise).astype(numpy.float32)


def make_corpus(root, n_speakers=18, utts=6, seed=0):
    """wav/<spk>/s1/<n>.wav corpus; each speaker has its own f0.

    Every third speaker (by f0) is a dev speaker (``dv``), the others are
    training speakers (``tr``), so the cohort covers the dev f0 range.
    """
    rng = numpy.random.default_rng(seed)
    speakers = {}
    for index in range(n_speakers):
        spk = f"{'dv' if index % 3 == 2 else 'tr'}{index:02d}"
        f0 = 100.0 + 40.0 * index
        folder = root / "wav" / spk / "s1"
        folder.mkdir(parents=True)
        speakers[spk] = []
        for utt in range(utts):
            seconds = rng.uniform(0.3, 0.9)
            path = folder / f"{utt}.wav"
            soundfile.write(path, speaker_signal(rng, f0, seconds), SAMPLE_RATE)
            speakers[spk].append(f"{spk}/s1/{utt}.wav")
    return speakers


def write_all_pairs(path, utterances):
    """Every pair of utterances as a trial; label from the speaker prefix."""
    lines = []
    for i, enrol in enumerate(utterances):
        for test in utterances[i + 1 :]:
            label = int(enrol.split("/")[0] == test.split("/")[0])
            lines.append(f"{label} {enrol} {test}\n")
    path.write_text("".join(lines))
    return [line.split() for line in lines]


def write_train_csv(path, root, speakers):
    """A SpeechBrain train CSV with two segments per training file."""
    with open(path, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(["ID", "duration", "wav", "start", "stop", "spk_id"])
        for spk, utts in speakers.items():
            if not spk.startswith("tr"):
                continue
            for utt in utts:
                for part in range(2):
                    writer.writerow(
                        [
                            f"{utt}_{part}",
                            0.2,
                            str(root / "wav" / utt),
                            0,
                            1,
                            spk,
                        ]
                    )


# ---------------------------------------------------------------------------
# compute_embeddings
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


def one_by_one(paths):
    """Reference: each file read with soundfile and encoded alone."""
    rows = []
    for path in paths:
        signal, _ = soundfile.read(path, dtype="float32")
        wav = torch.from_numpy(signal).unsqueeze(0)
        rows.append(spectral_encoder(wav, torch.ones(1)).squeeze(1))
    return torch.cat(rows)


def test_compute_embeddings_order_and_batching(corpus):
    root, speakers = corpus
    # Mixed order of lengths, so that sorting by length matters.
    paths = [str(root / "wav" / u) for utts in speakers.values() for u in utts]
    paths = paths[::-1][:20]
    want = one_by_one(paths)

    seen = []

    def spy(wavs, wav_lens):
        seen.append((wavs.shape, wav_lens.clone()))
        return spectral_encoder(wavs, wav_lens)

    got = embeddings.compute_embeddings(spy, paths, batch_size=6, device="cpu")
    assert got.shape == (20, 32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # Batches of at most 6 utterances of one length (nothing padded),
    # longest first.
    assert all(shape[0] <= 6 for shape, _ in seen)
    assert sum(shape[0] for shape, _ in seen) == 20
    longest = [shape[1] for shape, _ in seen]
    assert longest == sorted(longest, reverse=True)
    for _, lens in seen:
        assert (lens == 1.0).all()

    for batch_size, cap in ((1, None), (3, None), (64, None), (64, 1.5)):
        other = embeddings.compute_embeddings(
            spectral_encoder,
            paths,
            batch_size=batch_size,
            device="cpu",
            max_batch_seconds=cap,
        )
        torch.testing.assert_close(other, got, atol=1e-5, rtol=1e-5)


def test_scores_do_not_depend_on_the_batch_size(corpus):
    """One ECAPA-TDNN scored at batch 1 and at batch 16 gives every trial
    score equal within 1e-5: no utterance is padded (padded batches moved
    these cosines by up to 0.14)."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from speechbrain_trkd.onnx_export import speaker_features

    root, speakers = corpus
    paths = [str(root / "wav" / u) for utts in speakers.values() for u in utts]
    torch.manual_seed(0)
    model = ECAPA_TDNN(80, channels=[32, 32, 32, 32, 96], lin_neurons=16)
    model.eval()

    def encode(wavs, wav_lens):
        return model(speaker_features(wavs, wav_lens), wav_lens)

    scores = []
    for batch_size in (1, 16):
        emb = embeddings.compute_embeddings(encode, paths, batch_size, "cpu")
        emb = torch.nn.functional.normalize(emb, dim=1)
        scores.append(emb @ emb.T)
    assert (scores[0] - scores[1]).abs().max() < 1e-5


def test_compute_embeddings_max_batch_seconds_caps_padding(corpus):
    root, speakers = corpus
    paths = [str(root / "wav" / u) for u in speakers["tr00"] + speakers["tr01"]]
    sizes = []

    def spy(wavs, wav_lens):
        sizes.append(wavs.numel())
        return spectral_encoder(wavs, wav_lens)

    embeddings.compute_embeddings(spy, paths, 8, "cpu", max_batch_seconds=1.0)
    longest = max(soundfile.info(p).frames for p in paths)
    # A batch exceeds the cap only when it is a single long utterance.
    assert all(size <= max(SAMPLE_RATE, longest) for size in sizes)
    assert len(sizes) > 1


def test_compute_embeddings_keeps_equal_lengths_in_input_order(tmp_path):
    """Longest first; utterances of equal length batch in input order."""
    lengths = [800, 1600, 800, 800, 1600]
    paths = []
    for i, n in enumerate(lengths):
        paths.append(str(tmp_path / f"{i}.wav"))
        soundfile.write(paths[-1], numpy.full(n, 0.125 * (i + 1)), 16000)
    seen = []

    def first_sample(wavs, wav_lens):
        seen.append([round(v / 0.125) - 1 for v in wavs[:, 0].tolist()])
        return wavs[:, :1]

    got = embeddings.compute_embeddings(first_sample, paths, 2, "cpu")
    assert seen == [[1, 4], [0, 2], [3]]
    assert got.squeeze(1).tolist() == [0.125 * (i + 1) for i in range(5)]


def test_compute_embeddings_accepts_2d_encoder_output(corpus):
    root, speakers = corpus
    paths = [str(root / "wav" / u) for u in speakers["dv14"]]

    def flat(wavs, wav_lens):
        return spectral_encoder(wavs, wav_lens).squeeze(1)

    torch.testing.assert_close(
        embeddings.compute_embeddings(flat, paths, 3, "cpu"),
        one_by_one(paths),
        atol=1e-5,
        rtol=1e-5,
    )


def test_compute_embeddings_errors(corpus, tmp_path):
    root, speakers = corpus
    good = str(root / "wav" / speakers["tr00"][0])
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        embeddings.compute_embeddings(
            spectral_encoder, [good, "/x/nope.wav"], 2, "cpu"
        )
    wrong_rate = tmp_path / "8k.wav"
    soundfile.write(wrong_rate, numpy.zeros(4000, numpy.float32), 8000)
    with pytest.raises(ValueError, match="8k.wav: sample rate 8000 Hz"):
        embeddings.compute_embeddings(
            spectral_encoder, [str(wrong_rate)], 2, "cpu"
        )
    with pytest.raises(ValueError, match="no audio files"):
        embeddings.compute_embeddings(spectral_encoder, [], 2, "cpu")
    nan_file = tmp_path / "nan.wav"
    samples = numpy.zeros(16000, numpy.float32)
    samples[100] = numpy.nan
    soundfile.write(nan_file, samples, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav: non-finite samples"):
        embeddings.compute_embeddings(
            spectral_encoder, [str(nan_file)], 2, "cpu"
        )

    def bad(wavs, wav_lens):
        return wavs[:, :3, None]

    with pytest.raises(ValueError, match=r"expected \[B, D\] or \[B, 1, D\]"):
        embeddings.compute_embeddings(bad, [good], 2, "cpu")


def test_read_cohort_list(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "ID,duration,wav,start,stop,spk_id\n"
        "a,3,/abs/s2/x/2.wav,0,1,s2\n"
        "b,3,s1/x/3.wav,0,1,s1\n"
        "c,3,s1/x/1.wav,0,1,s1\n"
        "d,3,s1/x/1.wav,1,2,s1\n"
        "e,3,s1/y/2.wav,0,1,s1\n"
    )
    wavs, speakers = verification.read_cohort_list(
        path, "/root", utts_per_speaker=2
    )
    assert wavs == [
        "/root/wav/s1/x/1.wav",
        "/root/wav/s1/x/3.wav",
        "/abs/s2/x/2.wav",
    ]
    assert speakers == ["s1", "s1", "s2"]
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,wav\na,b.wav\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column.*spk_id"):
        verification.read_cohort_list(bad, "/root")


# ---------------------------------------------------------------------------
# evaluate_verification
# ---------------------------------------------------------------------------


def test_evaluate_verification_all_backends(corpus, tmp_path):
    root, speakers = corpus
    dev = [
        u
        for spk, utts in speakers.items()
        if spk.startswith("dv")
        for u in utts
    ]
    trials = write_all_pairs(tmp_path / "all.txt", dev)
    # A second list: the same trials in reverse order.
    reverse = tmp_path / "rev.txt"
    reverse.write_text("".join(" ".join(t) + "\n" for t in trials[::-1]))
    train_csv = tmp_path / "train.csv"
    write_train_csv(train_csv, root, speakers)

    out = tmp_path / "out"
    metrics = verification.evaluate_verification(
        spectral_encoder,
        data_folder=str(root),
        trial_lists={"all": str(tmp_path / "all.txt"), "rev": str(reverse)},
        output_folder=str(out),
        backends=["cosine", "asnorm", "plda"],
        train_csv=str(train_csv),
        cohort_utts_per_speaker=5,
        asnorm_top_n=5,
        plda_rank_f=8,
        batch_size=5,
        device="cpu",
    )
    assert set(metrics) == {"all", "rev"}
    for per_backend in metrics.values():
        assert set(per_backend) == {"cosine", "asnorm", "plda"}
        for values in per_backend.values():
            assert set(values) == {"eer", "min_dcf_0.01", "min_dcf_0.05"}
            assert 0.0 <= values["eer"] <= 100.0
    # Speakers differ in f0: every backend separates them well.
    for backend in ("cosine", "asnorm", "plda"):
        assert metrics["all"][backend]["eer"] < 10.0
        assert metrics["rev"][backend] == pytest.approx(metrics["all"][backend])

    # Score files follow the trial order; cosine values match a direct
    # computation on per-file embeddings.
    emb = one_by_one([str(root / "wav" / u) for u in dev])
    row = {u: i for i, u in enumerate(dev)}
    lines = (out / "scores" / "all_cosine.txt").read_text().splitlines()
    assert len(lines) == len(trials)
    for line, (label, enrol, test) in zip(lines, trials, strict=True):
        got_enrol, got_test, got_label, score = line.split()
        assert (got_enrol, got_test, got_label) == (enrol, test, label)
        want = torch.nn.functional.cosine_similarity(
            emb[row[enrol]], emb[row[test]], dim=0
        )
        assert float(score) == pytest.approx(float(want), abs=1e-5)
    for name in ("all_asnorm", "all_plda", "rev_cosine", "rev_plda"):
        assert (out / "scores" / f"{name}.txt").is_file()


def test_evaluate_verification_utterance_paths(corpus, tmp_path):
    root, speakers = corpus
    dev = speakers["dv14"] + speakers["dv17"]
    write_all_pairs(
        tmp_path / "O.txt", [u.replace(".wav", ".flac") for u in dev]
    )
    # Trial names (.flac) mapped to the real (.wav) files.
    mapping = {u.replace(".wav", ".flac"): str(root / "wav" / u) for u in dev}
    metrics = verification.evaluate_verification(
        spectral_encoder,
        str(root),
        [str(tmp_path / "O.txt")],
        str(tmp_path / "out"),
        device="cpu",
        utterance_paths=mapping,
    )
    assert list(metrics) == ["O"]
    with pytest.raises(FileNotFoundError, match=r"trial list O .*trial 1: "):
        verification.evaluate_verification(
            spectral_encoder,
            str(root),
            [str(tmp_path / "O.txt")],
            str(tmp_path / "out"),
            device="cpu",
        )


def test_evaluate_verification_errors(corpus, tmp_path):
    root, speakers = corpus
    trial_list = tmp_path / "O.txt"
    write_all_pairs(trial_list, speakers["dv14"] + speakers["dv17"])
    args = (spectral_encoder, str(root), [str(trial_list)], str(tmp_path))
    with pytest.raises(ValueError, match="need train_csv"):
        verification.evaluate_verification(
            *args, backends=["asnorm"], device="cpu"
        )
    with pytest.raises(ValueError, match=r"unknown .*\['lda'\]"):
        verification.evaluate_verification(
            *args, backends=["lda"], device="cpu"
        )
    with pytest.raises(ValueError, match="two trial lists are named 'O'"):
        verification.evaluate_verification(
            spectral_encoder,
            str(root),
            [str(trial_list), str(trial_list)],
            str(tmp_path),
            device="cpu",
        )


def test_write_metrics_and_table(tmp_path):
    metrics = {
        "O": {"cosine": {"eer": 1.5, "min_dcf_0.01": 0.2}},
        "H": {"plda": {"eer": 3.25, "min_dcf_0.01": 0.4}},
    }
    json_path, csv_path = verification.write_metrics(metrics, tmp_path / "m")
    assert json.loads(Path(json_path).read_text()) == metrics
    with open(csv_path) as csv_file:
        rows = list(csv.DictReader(csv_file))
    assert [(r["list"], r["backend"], float(r["eer"])) for r in rows] == [
        ("O", "cosine", 1.5),
        ("H", "plda", 3.25),
    ]
    table = verification.format_results_table(metrics).splitlines()
    assert table[0].split() == ["list", "backend", "eer", "min_dcf_0.01"]
    assert table[2].split() == ["H", "plda", "3.2500", "0.4000"]


# ---------------------------------------------------------------------------
# Command line on a pretrained-model folder
# ---------------------------------------------------------------------------

TINY_HPARAMS = """\
pretrained_path: nowhere
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 24
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: 24
    channels: [16, 16, 16, 16, 48]
    lin_neurons: 12
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 12
    out_neurons: 3
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def make_tiny_model_folder(folder):
    """A random tiny ECAPA saved in the layout of a SpeechBrain model."""
    from hyperpyyaml import load_hyperpyyaml

    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(TINY_HPARAMS)
    torch.manual_seed(0)
    hparams = load_hyperpyyaml(TINY_HPARAMS)
    torch.save(
        hparams["embedding_model"].state_dict(),
        folder / "embedding_model.ckpt",
    )
    torch.save(hparams["classifier"].state_dict(), folder / "classifier.ckpt")
    norm = hparams["mean_var_norm_emb"]
    norm(torch.randn(4, 1, 12), torch.ones(4))  # fit a global mean
    norm._save(folder / "mean_var_norm_emb.ckpt")
    encoder = hparams["label_encoder"]
    encoder.update_from_iterable(["a", "b", "c"])
    encoder.save(folder / "label_encoder.txt")


def test_main_on_tiny_model_folder(corpus, tmp_path):
    root, speakers = corpus
    model = tmp_path / "model"
    make_tiny_model_folder(model)
    trial_list = tmp_path / "tiny.txt"
    write_all_pairs(trial_list, speakers["dv14"] + speakers["dv17"])
    out = tmp_path / "out"
    results = {}
    for normalize in (False, True):
        results[normalize] = sv.main(
            [
                str(RECIPE / "hparams" / "verification.yaml"),
                f"--model_source={model}",
                f"--data_folder={root}",
                f"--output_folder={out / str(normalize)}",
                f"--verification_lists=[{trial_list}]",
                f"--normalize_embeddings={normalize}",
                "--batch_size=3",
                "--device=cpu",
            ]
        )
        saved = json.loads((out / str(normalize) / "metrics.json").read_text())
        assert saved == results[normalize]
        assert (out / str(normalize) / "scores" / "tiny_cosine.txt").is_file()
        eer = results[normalize]["tiny"]["cosine"]["eer"]
        assert 0.0 <= eer <= 100.0 and not math.isnan(eer)


# ---------------------------------------------------------------------------
# The real teacher on real speech (when /work/shared is present)
# ---------------------------------------------------------------------------


def openspk_subset(n_enrol=8, per_label=3):
    """A deterministic subset of openspk's O list, small enough for CPU.

    Going down the list, the first enrolment utterance of each of the first
    ``n_enrol`` enrolment speakers is kept with its first ``per_label``
    target and first ``per_label`` non-target trials (48 trials, 54
    utterances, about 3 minutes of speech).
    """
    chosen, counts = [], {}
    speakers = set()
    with open(OPENSPK / "trials" / "O.txt") as trial_file:
        for line in trial_file:
            label, enrol, test = line.split()
            speaker = enrol.split("/")[0]
            if enrol not in counts:
                if speaker in speakers or len(speakers) == n_enrol:
                    continue
                speakers.add(speaker)
                counts[enrol] = {"0": 0, "1": 0}
            if counts[enrol][label] < per_label:
                counts[enrol][label] += 1
                chosen.append(line)
    return chosen


@pytest.mark.skipif(
    not (TEACHER.is_dir() and OPENSPK.is_dir()),
    reason=f"real teacher / openspk data not found under {SHARED}",
)
def test_real_teacher_zero_shot_eer_on_openspk_subset(tmp_path):
    lines = openspk_subset()
    assert len(lines) == 48
    trial_list = tmp_path / "O_subset.txt"
    trial_list.write_text("".join(lines))
    start = time.perf_counter()
    metrics = sv.main(
        [
            str(RECIPE / "hparams" / "verification.yaml"),
            f"--model_source={TEACHER}",
            f"--data_folder={OPENSPK}",
            f"--output_folder={tmp_path / 'out'}",
            f"--verification_lists=[{trial_list}]",
            "--device=cpu",
        ]
    )
    elapsed = time.perf_counter() - start
    eer = metrics["O_subset"]["cosine"]["eer"]
    # The full O list gives 5.44 %; 48 trials are a coarse estimate.
    assert eer < 15.0, f"teacher EER {eer:.2f} % on the subset"
    assert metrics["O_subset"]["cosine"]["min_dcf_0.05"] < 1.0
    print(f"teacher subset EER {eer:.2f} % in {elapsed:.1f} s")


def test_lists_of_teacher_trained_speakers_are_named(tmp_path, caplog):
    """Scoring a list whose speakers the teacher trained on (Vox1-E/H with
    the Hub teacher) warns with the count and marks the list's rows."""
    corpus = make_synthetic_corpus(
        tmp_path / "corpus",
        n_train_speakers=2,
        n_dev_speakers=3,
        sessions_per_speaker=1,
        utterances_per_session=2,
        duration=(0.5, 0.6),
    )
    trials = read_trials(corpus.trial_file)
    dev = sorted({utt.split("/")[0] for utt in trials.enrol + trials.test})
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["vox_speaker", *dev[:2]])
    encoder_file = tmp_path / "label_encoder.txt"
    encoder.save(str(encoder_file))
    with caplog.at_level("WARNING"):
        overlap = verification.trained_speaker_overlap(
            {"H": corpus.trial_file}, str(encoder_file)
        )
    assert overlap == {"H": (2, len(dev))}
    assert f"trained on 2 of its {len(dev)} speakers" in caplog.text
    assert str(encoder_file) in caplog.text
    table = verification.format_results_table(
        {"H": {"cosine": {"eer": 1.0}}}, overlap
    )
    assert table.splitlines()[1].startswith("H*")
    assert f"H: 2 of {len(dev)}" in table
    clean = CategoricalEncoder()
    clean.update_from_iterable(["vox_speaker"])
    clean.save(str(tmp_path / "clean.txt"))
    assert not verification.trained_speaker_overlap(
        [corpus.trial_file], str(tmp_path / "clean.txt")
    )


def test_model_folder_code_is_never_run(tmp_path):
    """A payload in a model folder's hyperparams.yaml does not run; the
    weights load into our own architecture and embed as SpeechBrain's own
    loader of the clean folder does."""
    from speechbrain.inference.speaker import EncoderClassifier

    clean = tmp_path / "clean"
    make_tiny_model_folder(clean)
    hostile = tmp_path / "hostile"
    shutil.copytree(clean, hostile)
    marker = tmp_path / "pwned"
    with open(hostile / "hyperparams.yaml", "a") as fout:
        fout.write(f'pwn: !apply:os.system ["touch {marker}"]\n')
    encoder = pretrained.load_pretrained_encoder(str(hostile), "cpu")
    assert not marker.exists()
    reference = EncoderClassifier.from_hparams(
        source=str(clean),
        savedir=str(tmp_path / "savedir"),
        overrides={"pretrained_path": str(clean)},
        run_opts={"device": "cpu"},
    )
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    lens = torch.ones(2)
    for normalize in (False, True):
        torch.testing.assert_close(
            encoder.encode_batch(wavs, lens, normalize=normalize),
            reference.encode_batch(wavs, lens, normalize=normalize),
        )
    assert encoder.hparams.label_encoder.decode_ndim(1) == "b"


def test_model_folder_pins_and_damage_are_named(tmp_path):
    """A wrong sha256 pin, a truncated checkpoint and a damaged label
    encoder each fail before use, naming the file in the model folder."""
    model = tmp_path / "model"
    make_tiny_model_folder(model)
    digest = file_sha256(model / "classifier.ckpt")
    pretrained.load_pretrained_encoder(
        str(model), "cpu", sha256={"classifier.ckpt": digest}
    )
    with pytest.raises(ValueError, match="classifier.ckpt has sha256"):
        pretrained.load_pretrained_encoder(
            str(model), "cpu", sha256={"classifier.ckpt": "0" * 64}
        )
    data = (model / "classifier.ckpt").read_bytes()
    (model / "classifier.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model/classifier.ckpt is not a"):
        pretrained.load_pretrained_encoder(str(model), "cpu")
    (model / "classifier.ckpt").write_bytes(data)
    (model / "label_encoder.txt").write_text("'a' => 0\nbroken line\n")
    with pytest.raises(ValueError, match=r"model/label_encoder.txt is dama"):
        pretrained.load_pretrained_encoder(str(model), "cpu")


def test_every_reader_averages_the_channels(tmp_path):
    """Training crops (and so the cache) and scoring read a stereo file the
    same way: the mean of its channels."""
    from speechbrain_trkd.data import read_crop

    left = torch.linspace(-0.5, 0.5, 1600)
    right = torch.full((1600,), 0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(
        path, torch.stack([left, right], 1).numpy(), 16000, subtype="FLOAT"
    )
    crop = read_crop(str(path), 100, 900, 16000)
    whole = embeddings._read_mono(str(path), 16000)
    assert torch.allclose(crop, ((left + right) / 2)[100:900])
    assert torch.equal(crop, whole[100:900])


def test_long_utterances_are_embedded_in_chunks(tmp_path):
    """With max_chunk_seconds, no call embeds more than a chunk, and an
    encoder that averages over time gives the same embedding as whole."""
    path = str(tmp_path / "long.wav")
    signal = numpy.random.default_rng(0).uniform(-0.5, 0.5, 5 * SAMPLE_RATE)
    soundfile.write(path, signal, SAMPLE_RATE)
    lengths = []

    def mean_over_time(wavs, wav_lens):
        lengths.append(wavs.shape[1])
        return wavs.abs().mean(dim=1, keepdim=True)

    whole = embeddings.compute_embeddings(mean_over_time, [path], 1, "cpu")
    assert lengths == [5 * SAMPLE_RATE]
    lengths.clear()
    chunked = embeddings.compute_embeddings(
        mean_over_time, [path], 1, "cpu", max_chunk_seconds=2.0
    )
    assert len(lengths) == 3 and max(lengths) <= 2 * SAMPLE_RATE
    torch.testing.assert_close(chunked, whole)
