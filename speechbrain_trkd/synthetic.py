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
import math
import os
import shutil

import numpy as np
import soundfile as sf
from scipy import signal

OPTIONS_FILE = "synthetic_options.json"

# Formant frequencies (F1, F2, F3, in Hz) of ten American English vowels for
# an adult male reference vocal tract (Peterson & Barney, 1952, averages).
_VOWEL_FORMANTS = np.array(
    [
        [270.0, 2290.0, 3010.0],
        [390.0, 1990.0, 2550.0],
        [530.0, 1840.0, 2480.0],
        [660.0, 1720.0, 2410.0],
        [730.0, 1090.0, 2440.0],
        [570.0, 840.0, 2410.0],
        [440.0, 1020.0, 2240.0],
        [300.0, 870.0, 2240.0],
        [640.0, 1190.0, 2390.0],
        [490.0, 1350.0, 1690.0],
    ]
)
# Higher formants of the reference tract and base bandwidths of F1..F5.
_HIGH_FORMANTS = np.array([3500.0, 4500.0])
_BANDWIDTHS = np.array([60.0, 90.0, 120.0, 180.0, 250.0])
# Neutral (schwa-like) formants used for consonants and pauses.
_NEUTRAL_FORMANTS = np.array([500.0, 1500.0, 2500.0, 3500.0, 4500.0])

# Voice groups: (probability, log-mean f0 in Hz, log-std, formant scale).
_GROUPS = {
    "male": (0.45, 118.0, 0.14, 1.0),
    "female": (0.45, 205.0, 0.12, 1.16),
    "child": (0.10, 270.0, 0.10, 1.3),
}


@dataclasses.dataclass(frozen=True)
class SpeakerTraits:
    """Voice traits of one synthetic speaker.

    Arguments
    ---------
    speaker : str
        Speaker identifier (folder name under ``wav/``).
    role : str
        ``"train"`` or ``"dev"``.
    group : str
        Voice group the traits were drawn from (male, female or child).
    f0_mean : float
        Mean fundamental frequency in Hz.
    f0_range : float
        Standard deviation of the intonation, in semitones.
    formant_scale : float
        Vocal-tract-length factor applied to every formant frequency.
    tilt : float
        Pole of the one-pole low-pass filter shaping the spectral tilt.
    open_quotient : float
        Share of each glottal cycle during which the glottis is open.
    jitter : float
        Relative standard deviation of the cycle-to-cycle pitch perturbation.
    breathiness : float
        Level of the aspiration noise relative to the voiced excitation.
    bandwidth_scale : float
        Factor applied to the formant bandwidths.
    speaking_rate : float
        Syllables per second.
    vowel_bias : tuple of tuple of float
        Idiosyncratic factors, 10 rows of 3, applied to F1..F3 of each vowel.

    Example
    -------
    >>> traits = draw_speaker_traits("spk001", "train", seed=0)
    >>> traits.role
    'train'
    >>> 60.0 < traits.f0_mean < 500.0
    True
    """

    speaker: str
    role: str
    group: str
    f0_mean: float
    f0_range: float
    formant_scale: float
    tilt: float
    open_quotient: float
    jitter: float
    breathiness: float
    bandwidth_scale: float
    speaking_rate: float
    vowel_bias: tuple

    def csv_row(self):
        """Returns the traits as a dict of strings for ``speakers.csv``.

        Returns
        -------
        dict
            Column name to formatted value (the vowel biases are left out).

        Example
        -------
        >>> row = draw_speaker_traits("spk001", "dev", seed=0).csv_row()
        >>> row["speaker"], row["role"]
        ('spk001', 'dev')
        """
        row = {"speaker": self.speaker, "role": self.role, "group": self.group}
        for field in _TRAIT_COLUMNS:
            row[field] = f"{getattr(self, field):.4f}"
        return row


_TRAIT_COLUMNS = (
    "f0_mean",
    "f0_range",
    "formant_scale",
    "tilt",
    "open_quotient",
    "jitter",
    "breathiness",
    "bandwidth_scale",
    "speaking_rate",
)


def _rng(seed, *keys):
    """Independent generator for one (seed, keys) combination."""
    return np.random.default_rng([seed, *keys])


def draw_speaker_traits(speaker, role, seed, index=0):
    """Draws the voice traits of one speaker.

    The traits of a speaker depend only on ``(seed, index)``, so adding
    speakers to a corpus leaves the existing ones unchanged.

    Arguments
    ---------
    speaker : str
        Speaker identifier stored in the traits.
    role : str
        ``"train"`` or ``"dev"``.
    seed : int
        Corpus seed.
    index : int
        Global index of the speaker in the corpus.

    Returns
    -------
    SpeakerTraits
        The drawn traits.

    Example
    -------
    >>> a = draw_speaker_traits("a", "train", seed=0, index=0)
    >>> b = draw_speaker_traits("b", "train", seed=0, index=1)
    >>> a.f0_mean != b.f0_mean
    True
    >>> a == draw_speaker_traits("a", "train", seed=0, index=0)
    True
    """
    if role not in ("train", "dev"):
        raise ValueError(f"Speaker {speaker}: role must be train or dev")
    rng = _rng(seed, 0, index)
    names = list(_GROUPS)
    probs = np.array([_GROUPS[name][0] for name in names])
    group = names[rng.choice(len(names), p=probs)]
    _, f0_centre, f0_spread, scale_centre = _GROUPS[group]
    # Pitch and tract length are only loosely tied: the voices overlap.
    f0_mean = f0_centre * math.exp(f0_spread * rng.standard_normal())
    formant_scale = scale_centre * math.exp(0.05 * rng.standard_normal())
    return SpeakerTraits(
        speaker=speaker,
        role=role,
        group=group,
        f0_mean=float(np.clip(f0_mean, 70.0, 420.0)),
        f0_range=float(rng.uniform(1.0, 4.0)),
        formant_scale=float(np.clip(formant_scale, 0.85, 1.45)),
        tilt=float(rng.uniform(0.2, 0.85)),
        open_quotient=float(rng.uniform(0.4, 0.75)),
        jitter=float(rng.uniform(0.005, 0.03)),
        breathiness=float(rng.uniform(0.02, 0.3)),
        bandwidth_scale=float(rng.uniform(0.7, 1.5)),
        speaking_rate=float(rng.uniform(3.0, 6.0)),
        vowel_bias=tuple(
            tuple(map(float, row))
            for row in np.exp(0.04 * rng.standard_normal((10, 3)))
        ),
    )


@dataclasses.dataclass(frozen=True)
class _Session:
    """Recording conditions shared by the utterances of one session."""

    channel: np.ndarray  # SOS cascade, shape [n_sections, 6]
    noise_pole: float
    hum_hz: float
    hum_level: float
    snr_db: float
    f0_shift: float
    tilt_shift: float
    breath_factor: float


def _peaking_sos(freq, gain_db, q, sample_rate):
    """One peaking-equaliser biquad (bilinear transform design)."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cos_w0 = math.cos(w0)
    b = np.array([1 + alpha * amp, -2 * cos_w0, 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * cos_w0, 1 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])[None, :]


def _draw_session(seed, speaker_index, session_index, sample_rate, snr):
    """Draws the channel, noise and voice-state shifts of one session."""
    rng = _rng(seed, 1, speaker_index, session_index)
    nyquist = sample_rate / 2.0
    low_cut = rng.uniform(60.0, 300.0)
    high_cut = min(rng.uniform(3000.0, 7500.0), 0.9 * nyquist)
    sections = [
        signal.butter(2, low_cut, "highpass", fs=sample_rate, output="sos"),
        signal.butter(4, high_cut, "lowpass", fs=sample_rate, output="sos"),
    ]
    for _ in range(2):
        freq = math.exp(rng.uniform(math.log(200.0), math.log(5000.0)))
        sections.append(
            _peaking_sos(
                min(freq, 0.8 * nyquist),
                rng.uniform(-8.0, 8.0),
                rng.uniform(0.7, 2.0),
                sample_rate,
            )
        )
    has_hum = rng.random() < 0.3
    return _Session(
        channel=np.concatenate(sections, axis=0),
        noise_pole=float(rng.uniform(-0.5, 0.95)),
        hum_hz=float(rng.choice([50.0, 60.0])),
        hum_level=float(rng.uniform(0.2, 0.6)) if has_hum else 0.0,
        snr_db=float(rng.uniform(snr[0], snr[1])),
        f0_shift=float(0.7 * rng.standard_normal()),
        tilt_shift=float(rng.uniform(-0.08, 0.08)),
        breath_factor=float(math.exp(0.3 * rng.standard_normal())),
    )


def _resonator_sos(freqs, bandwidths, sample_rate):
    """Unit-DC-gain resonators as SOS rows, vectorised over the inputs.

    Resonances at or above 0.45 times the sample rate become pass-through
    sections so that every cascade has the same number of sections.
    """
    radius = np.exp(-math.pi * bandwidths / sample_rate)
    theta = 2.0 * math.pi * freqs / sample_rate
    a1 = -2.0 * radius * np.cos(theta)
    a2 = radius**2
    gain = 1.0 + a1 + a2
    zeros = np.zeros_like(freqs)
    sos = np.stack([gain, zeros, zeros, np.ones_like(freqs), a1, a2], axis=-1)
    passthrough = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    valid = (freqs < 0.45 * sample_rate)[..., None]
    return np.where(valid, sos, passthrough)


def _plan_segments(traits, n_samples, sample_rate, rng):
    """Splits an utterance into syllables, consonants and pauses.

    Returns the segment lengths (samples), kinds (0 pause, 1 consonant,
    2 vowel) and vowel indices (-1 where not a vowel), and word indices.
    """
    lengths, kinds, vowels, words = [], [], [], []
    word = 0
    total = int(0.05 * sample_rate)  # short leading silence
    lengths.append(total)
    kinds.append(0)
    vowels.append(-1)
    words.append(word)
    while total < n_samples:
        syllable = rng.lognormal(0.0, 0.25) / traits.speaking_rate
        if rng.random() < 0.5:
            consonant = rng.uniform(0.03, 0.08)
            lengths.append(int(consonant * sample_rate))
            kinds.append(1)
            vowels.append(-1)
            words.append(word)
            syllable = max(syllable - consonant, 0.04)
        lengths.append(int(syllable * sample_rate))
        kinds.append(2)
        vowels.append(int(rng.integers(len(_VOWEL_FORMANTS))))
        words.append(word)
        if rng.random() < 0.25:
            lengths.append(int(rng.uniform(0.08, 0.25) * sample_rate))
            kinds.append(0)
            vowels.append(-1)
            words.append(word)
            word += 1
        total = sum(lengths)
    lengths = np.array(lengths)
    # Trim the last segment so that the plan covers exactly n_samples.
    excess = lengths.sum() - n_samples
    while excess > 0:
        cut = min(excess, lengths[-1])
        lengths[-1] -= cut
        excess -= cut
        if lengths[-1] == 0:
            lengths = lengths[:-1]
            kinds, vowels, words = kinds[:-1], vowels[:-1], words[:-1]
    return lengths, np.array(kinds), np.array(vowels), np.array(words)


def _smooth_noise(rng, n_samples, rate, sample_rate):
    """Zero-mean unit-variance noise, linearly interpolated from `rate` Hz."""
    n_points = max(2, int(n_samples * rate / sample_rate) + 2)
    knots = rng.standard_normal(n_points)
    grid = np.linspace(0.0, n_points - 1.0, n_samples)
    return np.interp(grid, np.arange(n_points), knots)


def _glottal_flow(phase_fraction, open_quotient):
    """Rosenberg-type glottal flow pulse as a function of the cycle phase."""
    rise = 0.6 * open_quotient
    fall = 0.4 * open_quotient
    opening = 0.5 * (1.0 - np.cos(math.pi * phase_fraction / rise))
    closing = np.cos(0.5 * math.pi * (phase_fraction - rise) / fall)
    return np.where(
        phase_fraction < rise,
        opening,
        np.where(phase_fraction < rise + fall, closing, 0.0),
    )


def _segment_envelope(lengths, kinds, sample_rate):
    """Amplitude envelopes of voicing and frication, per sample."""
    ramp = max(1, int(0.01 * sample_rate))
    voiced, frication = [], []
    for length, kind in zip(lengths, kinds, strict=True):
        env = np.ones(length)
        edge = min(ramp, length // 2)
        if edge > 0:
            rise = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, edge))
            env[:edge] = rise
            env[length - edge :] = rise[::-1]
        voiced.append(env * (kind == 2))
        frication.append(env * (kind == 1))
    return np.concatenate(voiced), np.concatenate(frication)


def _synthesize_utterance(traits, session, n_samples, sample_rate, rng):
    """Source-filter synthesis of one utterance, channel and noise included."""
    lengths, kinds, vowels, words = _plan_segments(
        traits, n_samples, sample_rate, rng
    )
    voiced_env, fric_env = _segment_envelope(lengths, kinds, sample_rate)

    # Intonation: declination, one accent per word, and jitter.
    time = np.arange(n_samples) / sample_rate
    duration = n_samples / sample_rate
    semitones = np.full(n_samples, session.f0_shift)
    semitones += rng.uniform(-3.0, 0.0) * time / duration
    word_of_sample = np.repeat(words, lengths)
    accents = traits.f0_range * rng.standard_normal(words.max() + 1)
    # Word-level accents smoothed into a continuous contour on a 100 Hz
    # grid (150 ms Hann window), then interpolated to the sample rate.
    hop = sample_rate // 100
    coarse = accents[word_of_sample[::hop]]
    window = np.hanning(15)
    coarse = np.convolve(coarse, window / window.sum(), "same")
    semitones += np.interp(
        time, np.arange(len(coarse)) * hop / sample_rate, coarse
    )
    f0 = traits.f0_mean * 2.0 ** (semitones / 12.0)
    f0 *= 1.0 + traits.jitter * _smooth_noise(rng, n_samples, 150, sample_rate)
    f0 = np.clip(f0, 50.0, 0.2 * sample_rate)

    # Glottal source: flow pulses, differentiated (lip radiation).
    phase = np.cumsum(f0) / sample_rate
    phase_fraction = phase - np.floor(phase)
    flow = _glottal_flow(phase_fraction, traits.open_quotient)
    voiced = np.diff(flow, prepend=flow[0]) * voiced_env
    voiced /= np.sqrt(np.mean(voiced**2)) + 1e-12
    # Aspiration noise, louder while the glottis is open.
    open_phase = (phase_fraction < traits.open_quotient).astype(float)
    breath = traits.breathiness * session.breath_factor
    aspiration = breath * rng.standard_normal(n_samples) * voiced_env
    aspiration *= 0.3 + 0.7 * open_phase
    frication = 0.3 * rng.standard_normal(n_samples) * fric_env
    excitation = voiced + aspiration + frication

    # Spectral tilt (one-pole low-pass with unit DC gain).
    pole = float(np.clip(traits.tilt + session.tilt_shift, 0.0, 0.95))
    excitation = signal.lfilter([1.0 - pole], [1.0, -pole], excitation)

    # Vocal tract: one cascade of five resonators per segment, with the
    # filter state carried across segment boundaries.
    scale = traits.formant_scale
    vowel_table = _VOWEL_FORMANTS * np.array(traits.vowel_bias)
    freqs = np.tile(_NEUTRAL_FORMANTS, (len(lengths), 1))
    is_vowel = vowels >= 0
    freqs[is_vowel, :3] = vowel_table[vowels[is_vowel]]
    freqs[is_vowel, 3:] = _HIGH_FORMANTS
    freqs *= scale
    bandwidths = _BANDWIDTHS * traits.bandwidth_scale * np.ones_like(freqs)
    sos = _resonator_sos(freqs, bandwidths, sample_rate)
    speech = np.empty(n_samples)
    state = np.zeros((sos.shape[1], 2))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    for index in range(len(lengths)):
        start, stop = bounds[index], bounds[index + 1]
        if stop > start:
            speech[start:stop], state = signal.sosfilt(
                sos[index], excitation[start:stop], zi=state
            )
    speech /= np.sqrt(np.mean(speech**2)) + 1e-12

    # Session noise: coloured noise plus optional mains hum, at the SNR.
    noise = signal.lfilter(
        [1.0], [1.0, -session.noise_pole], rng.standard_normal(n_samples)
    )
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    hum_phase = 2.0 * math.pi * session.hum_hz * time
    noise += session.hum_level * (
        np.sin(hum_phase) + 0.5 * np.sin(3.0 * hum_phase)
    )
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    snr_db = session.snr_db + rng.uniform(-3.0, 3.0)
    mixture = speech + noise * 10.0 ** (-snr_db / 20.0)

    # Channel (band-limiting and equaliser), then a random recording level.
    mixture = signal.sosfilt(session.channel, mixture)
    peak = np.max(np.abs(mixture)) + 1e-12
    return mixture * (rng.uniform(0.3, 0.9) / peak)


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
    options = {
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
    previous = _previous_corpus(folder, options)
    if previous is not None:
        return previous

    wav_root = os.path.join(folder, "wav")
    n_speakers = n_train_speakers + n_dev_speakers
    all_traits = []
    dev_utterances = {}
    n_utterances, total_samples = 0, 0
    for index in range(n_speakers):
        role = "train" if index < n_train_speakers else "dev"
        traits = draw_speaker_traits(f"spk{index + 1:04d}", role, seed, index)
        all_traits.append(traits)
        for session_index in range(sessions_per_speaker):
            session_name = f"ses{session_index + 1:02d}"
            session = _draw_session(
                seed, index, session_index, sample_rate, snr_db
            )
            os.makedirs(
                os.path.join(wav_root, traits.speaker, session_name),
                exist_ok=True,
            )
            for utt_index in range(utterances_per_session):
                rng = _rng(seed, 2, index, session_index, utt_index)
                n_samples = int(rng.uniform(*duration) * sample_rate)
                audio = _synthesize_utterance(
                    traits, session, n_samples, sample_rate, rng
                )
                rel = f"{traits.speaker}/{session_name}/{utt_index + 1:05d}.wav"
                sf.write(
                    os.path.join(wav_root, rel),
                    audio.astype(np.float32),
                    sample_rate,
                    subtype="PCM_16",
                )
                n_utterances += 1
                total_samples += n_samples
                if role == "dev":
                    dev_utterances.setdefault(traits.speaker, []).append(
                        (session_name, rel)
                    )

    with open(
        os.path.join(folder, "speakers.csv"), "w", newline="", encoding="utf-8"
    ) as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["speaker", "role", "group", *_TRAIT_COLUMNS]
        )
        writer.writeheader()
        for traits in all_traits:
            writer.writerow(traits.csv_row())

    trials = _make_trials(dev_utterances, trials_per_utterance, _rng(seed, 3))
    os.makedirs(os.path.join(folder, "trials"), exist_ok=True)
    with open(
        os.path.join(folder, "trials", "O.txt"), "w", encoding="utf-8"
    ) as handle:
        handle.write("".join(line + "\n" for line in trials))

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
