"""The voices of the synthetic corpus: each speaker's traits (pitch,
formants, spectral tilt, rate), each session's channel and noise, and the
source-filter synthesis of an utterance from them.

Authors
 * speechbrain-trkd developers 2026
"""

import dataclasses
import math

import numpy as np
from scipy import signal

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


TRAIT_COLUMNS = (
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
        for field in TRAIT_COLUMNS:
            row[field] = f"{getattr(self, field):.4f}"
        return row


def seeded_rng(seed, *keys):
    """Independent generator for one (seed, keys) combination.

    Example
    -------
    >>> float(seeded_rng(1, 2).random()) == float(seeded_rng(1, 2).random())
    True
    """
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
    rng = seeded_rng(seed, 0, index)
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


def draw_session(seed, speaker_index, session_index, sample_rate, snr):
    """Draws the channel, noise and voice-state shifts of one session.

    Example
    -------
    >>> session = draw_session(1, 0, 0, 16000, snr=(10.0, 20.0))
    >>> 10.0 <= session.snr_db <= 20.0, session.channel.shape[1]
    (True, 6)
    """
    rng = seeded_rng(seed, 1, speaker_index, session_index)
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


def synthesize_utterance(traits, session, n_samples, sample_rate, rng):
    """Source-filter synthesis of one utterance, channel and noise included.

    Example
    -------
    >>> traits = draw_speaker_traits("s", "train", seed=1)
    >>> session = draw_session(1, 0, 0, 16000, snr=(10.0, 20.0))
    >>> audio = synthesize_utterance(traits, session, 8000, 16000,
    ...                              seeded_rng(1, 5))
    >>> audio.shape
    (8000,)
    """
    lengths, kinds, vowels, words = _plan_segments(
        traits, n_samples, sample_rate, rng
    )
    voiced_env, fric_env = _segment_envelope(lengths, kinds, sample_rate)

    f0 = _pitch(traits, session, words, lengths, sample_rate, rng)

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

    speech = _vocal_tract(traits, lengths, vowels, excitation, sample_rate)

    noise = _session_noise(session, n_samples, sample_rate, rng)
    snr_db = session.snr_db + rng.uniform(-3.0, 3.0)
    mixture = speech + noise * 10.0 ** (-snr_db / 20.0)

    # Channel (band-limiting and equaliser), then a random recording level.
    mixture = signal.sosfilt(session.channel, mixture)
    peak = np.max(np.abs(mixture)) + 1e-12
    return mixture * (rng.uniform(0.3, 0.9) / peak)


def _pitch(traits, session, words, lengths, sample_rate, rng):
    """The F0 contour, in Hz per sample."""
    n_samples = int(np.sum(lengths))
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
    return f0


def _vocal_tract(traits, lengths, vowels, excitation, sample_rate):
    """The excitation through the vocal tract, normalised to unit power."""
    n_samples = len(excitation)
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
    return speech


def _session_noise(session, n_samples, sample_rate, rng):
    """The session's noise (and hum) at unit power."""
    time = np.arange(n_samples) / sample_rate
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
    return noise
