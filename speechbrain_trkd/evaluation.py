"""A trained speaker encoder scored on the verification lists: the
student's embedding function and the scoring of a run.

Authors
 * speechbrain-trkd developers 2026
"""

import os

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.plots import write_verification_plots
from speechbrain_trkd.trials import (
    as_path_list,
    fetch_verification_list,
    read_utterance_paths,
)
from speechbrain_trkd.verification import (
    evaluate_verification,
    format_results_table,
    trained_speaker_overlap,
    write_metrics,
)

logger = get_logger(__name__)


def student_encoder(brain):
    """Returns a function that embeds padded waveforms with the student.

    Arguments
    ---------
    brain : DistillationBrain
        The trained brain (its modules are put in eval mode).

    Returns
    -------
    callable
        ``encode(wavs, wav_lens) -> [batch, emb_dim]`` under no_grad.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> from speechbrain.processing.features import InputNormalization
    >>> modules = torch.nn.ModuleDict({
    ...     "compute_features": Fbank(n_mels=80),
    ...     "mean_var_norm": InputNormalization(norm_type="sentence"),
    ...     "embedding_model": ECAPA_TDNN(
    ...         80, channels=[8, 8, 8, 8, 24], lin_neurons=16),
    ... })
    >>> encode = student_encoder(SimpleNamespace(modules=modules))
    >>> encode(torch.randn(2, 16000), torch.ones(2)).shape
    torch.Size([2, 16])
    """
    brain.modules.eval()

    @torch.no_grad()
    def encode(wavs, wav_lens):
        feats = brain.modules.compute_features(wavs)
        feats = brain.modules.mean_var_norm(feats, wav_lens)
        return brain.modules.embedding_model(feats, wav_lens).squeeze(1)

    return encode


def score_encoder(
    encode_fn,
    device,
    *,
    data_folder,
    verification_lists,
    prep_folder,
    output_folder,
    backends,
    cohort_csv,
    cohort_per_speaker,
    asnorm_top_n,
    batch_size,
    sample_rate,
    trial_audio_csvs=(),
    teacher_folder=None,
    write_plots=False,
    max_chunk_seconds=None,
):
    """Scores an encoder on the verification lists and saves the metrics.

    Trial paths are resolved against the first data folder (or through
    ``trial_audio_csvs``); the AS-norm cohort and the PLDA training set
    come from ``cohort_csv``. Metrics go to ``<output_folder>/metrics.json``
    / ``.csv``, score files to ``<output_folder>/scores`` and, with
    ``write_plots``, the DET and score-histogram PNGs beside the metrics.

    Arguments
    ---------
    encode_fn : callable
        ``encode_fn(wavs, wav_lens) -> embeddings``.
    device : str or torch.device
        Where the encoder runs.
    data_folder : str or list
        The corpus root(s).
    verification_lists : list
        Trial lists (paths or URLs), fetched into ``prep_folder``.
    prep_folder : str
        Where the lists are kept.
    output_folder : str
        Where metrics and scores are written.
    backends : list of str
        ``cosine``, ``asnorm``, ``plda``.
    cohort_csv : str
        Training CSV of the cohort / PLDA utterances.
    cohort_per_speaker, asnorm_top_n, batch_size : int
        See ``evaluate_verification``.
    sample_rate : int
        The rate the encoder expects.
    trial_audio_csvs : list of str
        CSVs (``ID``, ``wav``) of trial utterances named by ID; they take
        precedence over the preparation's ``enrol.csv`` and ``test.csv``
        in ``prep_folder``, through which every trial resolves as the
        preparation found it (e.g. a ``.wav`` name stored as ``.flac``).
    teacher_folder : str, optional
        A collected teacher whose training speakers the lists should not
        hold (warned about).
    write_plots : bool
        Whether to draw the DET and score-histogram PNGs (with matplotlib).
    max_chunk_seconds : float, optional
        Utterances longer than this are embedded in chunks, bounding memory
        (``compute_embeddings``).

    Returns
    -------
    dict
        ``{list_name: {backend: {metric: value}}}``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=3, n_dev_speakers=2,
    ...     sessions_per_speaker=2, utterances_per_session=2,
    ...     duration=(1.0, 2.0))
    >>> prep = os.path.join(tmp, "prep")
    >>> cohort = corpus.training_csv(os.path.join(tmp, "cohort.csv"))
    >>> def encode(wavs, wav_lens):  # two crude spectral statistics
    ...     spectrum = torch.fft.rfft(wavs).abs()
    ...     return torch.stack([spectrum[:, :400].mean(1),
    ...                         spectrum[:, 400:].mean(1)], dim=1)
    >>> metrics = score_encoder(
    ...     encode, "cpu", data_folder=corpus.folder,
    ...     verification_lists=[corpus.trial_file], prep_folder=prep,
    ...     output_folder=os.path.join(tmp, "run"),
    ...     backends=["cosine", "asnorm"], cohort_csv=cohort,
    ...     cohort_per_speaker=2, asnorm_top_n=2, batch_size=4,
    ...     sample_rate=16000)
    >>> sorted(metrics["O"]), sorted(metrics["O"]["cosine"])
    (['asnorm', 'cosine'], ['eer', 'min_dcf_0.01', 'min_dcf_0.05'])
    """
    lists = [
        fetch_verification_list(src, prep_folder)
        for src in as_path_list(verification_lists)
    ]
    metrics = evaluate_verification(
        encode_fn,
        data_folder=as_path_list(data_folder)[0],
        trial_lists=lists,
        output_folder=output_folder,
        backends=backends,
        train_csv=cohort_csv,
        cohort_utts_per_speaker=cohort_per_speaker,
        asnorm_top_n=asnorm_top_n,
        batch_size=batch_size,
        device=device,
        sample_rate=sample_rate,
        utterance_paths=read_utterance_paths(
            [*prepared_trial_csvs(prep_folder), *trial_audio_csvs]
        ),
        max_chunk_seconds=max_chunk_seconds,
    )
    write_metrics(metrics, output_folder)
    if write_plots:
        write_verification_plots(metrics, output_folder)
    overlap = {}
    teacher_encoder = os.path.join(teacher_folder or "", "label_encoder.ckpt")
    if teacher_folder and os.path.isfile(teacher_encoder):
        overlap = trained_speaker_overlap(lists, teacher_encoder)
    logger.info(
        "Verification results:\n%s", format_results_table(metrics, overlap)
    )
    return metrics


def prepared_trial_csvs(prep_folder):
    """The preparation's CSVs of the trial utterances (``enrol.csv``,
    ``test.csv``: the trial-list path as ``ID``, the file found for it as
    ``wav``) in ``prep_folder``, those that exist.

    Arguments
    ---------
    prep_folder : str
        The preparation's folder.

    Returns
    -------
    list of str

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "test.csv"), "w").write("ID,wav")
    >>> [os.path.basename(p) for p in prepared_trial_csvs(folder)]
    ['test.csv']
    """
    paths = [
        os.path.join(prep_folder, name) for name in ("enrol.csv", "test.csv")
    ]
    return [path for path in paths if os.path.isfile(path)]
