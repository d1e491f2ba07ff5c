"""Synthetic speaker corpus in VoxCeleb layout.

The generator builds a small, fully reproducible speaker-verification corpus
for tests and for the recipe's offline demo. Every speaker has voice-like
traits (mean pitch and pitch range, vocal-tract length through a scaling of
vowel formant frequencies, spectral tilt, glottal open quotient, jitter,
breathiness, formant bandwidths and speaking rate). Utterances are sequences
of vowel-like syllables with intonation, made by source-filter synthesis: a
glottal flow pulse train (with aspiration noise) drives a cascade of formant
resonators. Every recording session then gets its own channel (band-limiting
and a random equaliser), its own noise colour and signal-to-noise ratio, and
a small shift of the speaker's pitch and vocal effort, so that session
effects compete with speaker identity as they do in VoxCeleb.

Layout written under ``folder``::

    wav/<speaker>/<session>/<utterance>.wav    16-bit PCM, mono
    speakers.csv                               speaker, role, traits
    trials/O.txt                               label enrol test
    synthetic_options.json                     options and summary

Training speakers are those that appear in no trial list, as in VoxCeleb.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import dataclasses
import json
import os
import shutil

import numpy as np
import soundfile as sf

from speechbrain_trkd.synthetic_voice import (
    TRAIT_COLUMNS,
    draw_session,
    draw_speaker_traits,
    seeded_rng,
    synthesize_utterance,
)

OPTIONS_FILE = "synthetic_options.json"


@dataclasses.dataclass(frozen=True)
class CorpusSummary:
    """What `make_synthetic_corpus` wrote.

    Arguments
    ---------
    folder : str
        Root of the corpus (holds ``wav/``, ``trials/`` and
        ``speakers.csv``).
    train_speakers : tuple of str
        Training speakers (in no trial list).
    dev_speakers : tuple of str
        Evaluation speakers (in ``trials/O.txt`` only).
    n_utterances : int
        Number of audio files written.
    n_trials : int
        Number of lines of ``trials/O.txt`` (half of them target trials).
    total_seconds : float
        Total audio duration.

    Example
    -------
    >>> summary = CorpusSummary("c", ("a",), ("b", "c"), 6, 4, 12.0)
    >>> summary.n_trials
    4
    """

    folder: str
    train_speakers: tuple
    dev_speakers: tuple
    n_utterances: int
    n_trials: int
    total_seconds: float

    @property
    def trial_file(self):
        """Path of the trial list ``trials/O.txt``.

        Returns
        -------
        str
            The path.

        Example
        -------
        >>> CorpusSummary("c", (), (), 0, 0, 0.0).trial_file
        'c/trials/O.txt'
        """
        return os.path.join(self.folder, "trials", "O.txt")

    def training_csv(self, path):
        """Writes a SpeechBrain CSV of the training speakers' whole
        utterances (``ID, duration, wav, start, stop, spk_id``), for
        examples and tests that need segments without a data preparation.

        Arguments
        ---------
        path : str
            The CSV to write.

        Returns
        -------
        str
            ``path``.

        Example
        -------
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> corpus = make_synthetic_corpus(
        ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
        ...     n_dev_speakers=2, sessions_per_speaker=1,
        ...     utterances_per_session=2, duration=(1.0, 1.5))
        >>> with open(corpus.training_csv(os.path.join(tmp, "t.csv"))) as f:
        ...     len(f.readlines())
        5
        """
        rows = []
        for speaker in self.train_speakers:
            speaker_folder = os.path.join(self.folder, "wav", speaker)
            for root, _, files in sorted(os.walk(speaker_folder)):
                for name in sorted(files):
                    wav = os.path.join(root, name)
                    frames = sf.info(wav).frames
                    rate = sf.info(wav).samplerate
                    rows.append(
                        {
                            "ID": f"{speaker}_{len(rows)}",
                            "duration": frames / rate,
                            "wav": wav,
                            "start": 0,
                            "stop": frames,
                            "spk_id": speaker,
                        }
                    )
        with open(path, "w", newline="", encoding="utf-8") as fout:
            writer = csv.DictWriter(fout, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path


def _check_options(
    n_train_speakers,
    n_dev_speakers,
    sessions_per_speaker,
    utterances_per_session,
    duration,
    sample_rate,
    snr_db,
    trials_per_utterance,
):
    """Raises ValueError on inconsistent generator options."""
    if n_train_speakers < 1:
        raise ValueError("n_train_speakers must be at least 1")
    if n_dev_speakers < 2:
        raise ValueError("n_dev_speakers must be at least 2 (non-targets)")
    if sessions_per_speaker < 1 or utterances_per_session < 1:
        raise ValueError(
            "sessions_per_speaker and utterances_per_session must be >= 1"
        )
    if sessions_per_speaker * utterances_per_session < 2:
        raise ValueError(
            "each speaker needs at least 2 utterances for target trials"
        )
    if len(duration) != 2 or not 0.3 <= duration[0] <= duration[1]:
        raise ValueError(
            f"duration must be (min_s, max_s) with 0.3 <= min_s <= max_s, "
            f"got {duration}"
        )
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000, got {sample_rate}")
    if len(snr_db) != 2 or snr_db[0] > snr_db[1]:
        raise ValueError(f"snr_db must be (low, high), got {snr_db}")
    if trials_per_utterance < 1:
        raise ValueError("trials_per_utterance must be at least 1")


def _make_trials(dev_utterances, trials_per_utterance, rng):
    """Balanced target / non-target trials over the dev utterances.

    Arguments
    ---------
    dev_utterances : dict
        Dev speaker -> list of (session, relative path).
    trials_per_utterance : int
        Target trials (and as many non-target trials) per enrol utterance.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    list of str
        Trial lines ``label enrol test``.
    """
    lines = []
    speakers = sorted(dev_utterances)
    for speaker in speakers:
        others = [
            path
            for other in speakers
            if other != speaker
            for _, path in dev_utterances[other]
        ]
        own = dev_utterances[speaker]
        for session, enrol in own:
            # Cross-session targets first (harder, as in VoxCeleb).
            cross = [p for s, p in own if s != session]
            same = [p for s, p in own if s == session and p != enrol]
            candidates = [cross[i] for i in rng.permutation(len(cross))]
            candidates += [same[i] for i in rng.permutation(len(same))]
            targets = candidates[:trials_per_utterance]
            picks = rng.choice(len(others), len(targets), replace=False)
            lines += [f"1 {enrol} {test}" for test in targets]
            lines += [f"0 {enrol} {others[i]}" for i in picks]
    return lines


def make_synthetic_corpus(
    folder,
    n_train_speakers=40,
    n_dev_speakers=10,
    sessions_per_speaker=3,
    utterances_per_session=4,
    duration=(2.0, 4.0),
    sample_rate=16000,
    snr_db=(5.0, 30.0),
    trials_per_utterance=2,
    seed=0,
):
    """Writes a synthetic speaker corpus in VoxCeleb layout.

    The output is byte-identical for identical options. When ``folder``
    already holds a corpus made by this function with the same options, it
    is reused as is; with different options it is regenerated. A folder
    holding other data under ``wav/``, ``trials/`` or ``speakers.csv`` is
    never overwritten.

    Arguments
    ---------
    folder : str or os.PathLike
        Output folder (created if needed).
    n_train_speakers : int
        Number of training speakers.
    n_dev_speakers : int
        Number of evaluation speakers, used only in ``trials/O.txt``.
    sessions_per_speaker : int
        Recording sessions per speaker (each with its own channel and noise).
    utterances_per_session : int
        Utterances per session.
    duration : tuple of float
        (min_s, max_s): utterance durations are uniform in this range.
    sample_rate : int
        Sample rate of the written files in Hz.
    snr_db : tuple of float
        Range of the per-session signal-to-noise ratio in dB (each utterance
        varies by a further +-3 dB).
    trials_per_utterance : int
        Target trials per dev utterance used as enrolment; as many
        non-target trials are added, so the list is balanced.
    seed : int
        Seed of every random draw.

    Returns
    -------
    CorpusSummary
        Folder, speaker lists and counts.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> summary = make_synthetic_corpus(
    ...     tmp, n_train_speakers=2, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=1,
    ...     duration=(0.5, 0.5), trials_per_utterance=1)
    >>> summary.n_utterances, summary.n_trials
    (8, 8)
    >>> sorted(os.listdir(os.path.join(tmp, "wav")))
    ['spk0001', 'spk0002', 'spk0003', 'spk0004']
    >>> open(summary.trial_file).readline()
    '1 spk0003/ses01/00001.wav spk0003/ses02/00001.wav\\n'
    """
    folder = os.fspath(folder)
    options = _checked_options(
        n_train_speakers,
        n_dev_speakers,
        sessions_per_speaker,
        utterances_per_session,
        duration,
        sample_rate,
        snr_db,
        trials_per_utterance,
        seed,
    )
    previous = _previous_corpus(folder, options)
    if previous is not None:
        return previous

    wav_root = os.path.join(folder, "wav")
    all_traits = []
    dev_utterances = {}
    n_utterances, total_samples = 0, 0
    for index in range(n_train_speakers + n_dev_speakers):
        role = "train" if index < n_train_speakers else "dev"
        traits = draw_speaker_traits(f"spk{index + 1:04d}", role, seed, index)
        all_traits.append(traits)
        written = _write_speaker(wav_root, traits, index, options)
        n_utterances += len(written)
        total_samples += sum(n_samples for _, _, n_samples in written)
        if role == "dev":
            dev_utterances[traits.speaker] = [
                (session, rel) for session, rel, _ in written
            ]

    trials = _write_lists(folder, all_traits, dev_utterances, options)
    summary = CorpusSummary(
        folder=folder,
        train_speakers=tuple(
            t.speaker for t in all_traits if t.role == "train"
        ),
        dev_speakers=tuple(t.speaker for t in all_traits if t.role == "dev"),
        n_utterances=n_utterances,
        n_trials=len(trials),
        total_seconds=round(total_samples / sample_rate, 3),
    )
    record = {"options": options, "summary": dataclasses.asdict(summary)}
    with open(
        os.path.join(folder, OPTIONS_FILE), "w", encoding="utf-8"
    ) as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    return summary


def _checked_options(
    n_train_speakers,
    n_dev_speakers,
    sessions_per_speaker,
    utterances_per_session,
    duration,
    sample_rate,
    snr_db,
    trials_per_utterance,
    seed,
):
    """The corpus options, checked, as the plain values its record holds."""
    duration = (float(duration[0]), float(duration[1]))
    snr_db = (float(snr_db[0]), float(snr_db[1]))
    _check_options(
        n_train_speakers,
        n_dev_speakers,
        sessions_per_speaker,
        utterances_per_session,
        duration,
        sample_rate,
        snr_db,
        trials_per_utterance,
    )
    return {
        "n_train_speakers": int(n_train_speakers),
        "n_dev_speakers": int(n_dev_speakers),
        "sessions_per_speaker": int(sessions_per_speaker),
        "utterances_per_session": int(utterances_per_session),
        "duration": list(duration),
        "sample_rate": int(sample_rate),
        "snr_db": list(snr_db),
        "trials_per_utterance": int(trials_per_utterance),
        "seed": int(seed),
    }


def _write_lists(folder, all_traits, dev_utterances, options):
    """Writes ``speakers.csv`` and ``trials/O.txt``; returns the trials."""
    with open(
        os.path.join(folder, "speakers.csv"), "w", newline="", encoding="utf-8"
    ) as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["speaker", "role", "group", *TRAIT_COLUMNS]
        )
        writer.writeheader()
        for traits in all_traits:
            writer.writerow(traits.csv_row())

    trials = _make_trials(
        dev_utterances,
        options["trials_per_utterance"],
        seeded_rng(options["seed"], 3),
    )
    os.makedirs(os.path.join(folder, "trials"), exist_ok=True)
    with open(
        os.path.join(folder, "trials", "O.txt"), "w", encoding="utf-8"
    ) as handle:
        handle.write("".join(line + "\n" for line in trials))
    return trials


def _write_speaker(wav_root, traits, index, options):
    """Writes one speaker's sessions and utterances; returns
    ``[(session, relative path, samples)]`` in the order written."""
    seed, sample_rate = options["seed"], options["sample_rate"]
    written = []
    for session_index in range(options["sessions_per_speaker"]):
        session_name = f"ses{session_index + 1:02d}"
        session = draw_session(
            seed, index, session_index, sample_rate, tuple(options["snr_db"])
        )
        os.makedirs(
            os.path.join(wav_root, traits.speaker, session_name),
            exist_ok=True,
        )
        for utt_index in range(options["utterances_per_session"]):
            rng = seeded_rng(seed, 2, index, session_index, utt_index)
            n_samples = int(rng.uniform(*options["duration"]) * sample_rate)
            audio = synthesize_utterance(
                traits, session, n_samples, sample_rate, rng
            )
            rel = f"{traits.speaker}/{session_name}/{utt_index + 1:05d}.wav"
            sf.write(
                os.path.join(wav_root, rel),
                audio.astype(np.float32),
                sample_rate,
                subtype="PCM_16",
            )
            written.append((session_name, rel, n_samples))
    return written


_OUTPUTS = ("wav", "trials", "speakers.csv")


def _previous_corpus(folder, options):
    """Summary of a reusable corpus in `folder`, or None after clearing it.

    Raises FileExistsError when `folder` holds data this module did not
    write.
    """
    os.makedirs(folder, exist_ok=True)
    record_path = os.path.join(folder, OPTIONS_FILE)
    present = [
        name for name in _OUTPUTS if os.path.exists(os.path.join(folder, name))
    ]
    if not os.path.isfile(record_path):
        if present:
            raise FileExistsError(
                f"{folder} already holds {', '.join(present)} that "
                f"make_synthetic_corpus did not write (no {OPTIONS_FILE}); "
                "choose an empty folder"
            )
        return None
    with open(record_path, encoding="utf-8") as handle:
        record = json.load(handle)
    if record.get("options") == options and len(present) == len(_OUTPUTS):
        summary = record["summary"]
        summary["folder"] = folder
        summary["train_speakers"] = tuple(summary["train_speakers"])
        summary["dev_speakers"] = tuple(summary["dev_speakers"])
        return CorpusSummary(**summary)
    # Our own corpus made with other options: remove it and regenerate.
    os.remove(record_path)
    for name in present:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return None
