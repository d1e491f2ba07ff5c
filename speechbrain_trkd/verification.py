"""Speaker verification: cohorts, the scoring backends (cosine, AS-norm,
PLDA) over an encoder's embeddings, and the EER / minDCF report.

Trial lists (``label enrol test`` in the VoxCeleb format) and where their
utterances are: :mod:`speechbrain_trkd.trials`; embeddings, utterance by
utterance in batches of equal length (padding moves ECAPA embeddings):
:mod:`speechbrain_trkd.embeddings`.

Authors
 * speechbrain-trkd developers 2026
"""

import csv
import functools
import json
import os
import time

from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.distributed import infer_device
from speechbrain.utils.logger import get_logger

from speechbrain_trkd.embeddings import compute_embeddings
from speechbrain_trkd.metrics import compute_eer, compute_min_dcf
from speechbrain_trkd.scoring import (
    PLDABackend,
    asnorm_scores,
    cosine_scores,
    speaker_mean_embeddings,
)
from speechbrain_trkd.trials import (
    check_utterances_exist,
    index_utterances,
    read_trials,
    utterance_path,
    write_scores,
)

logger = get_logger(__name__)


BACKENDS = ("cosine", "asnorm", "plda")


def read_cohort_list(train_csv, data_folder, utts_per_speaker=10):
    """Training utterances for the AS-norm cohort and the PLDA model.

    Reads a SpeechBrain CSV (columns ``wav`` and ``spk_id`` are used; rows
    may be segments of the same file) and keeps, for each speaker, the first
    ``utts_per_speaker`` distinct audio files in sorted order; whole files
    are embedded, like the trial utterances.

    Arguments
    ---------
    train_csv : str
        The training CSV written by data preparation.
    data_folder : str
        Dataset root: a relative ``wav`` entry is taken relative to
        ``<data_folder>/wav``.
    utts_per_speaker : int
        Files kept per speaker at most.

    Returns
    -------
    wav_paths : list of str
        The kept audio files.
    speaker_ids : list of str
        The speaker of each file.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "train.csv")
    ...     with open(path, "w") as f:
    ...         _ = f.write("ID,duration,wav,start,stop,spk_id\\n")
    ...         for utt in ["s1/a/2", "s1/a/1", "s1/a/1", "s1/b/3", "s2/c/1"]:
    ...             _ = f.write(f"{utt},3.0,{utt}.wav,0,48000,{utt[:2]}\\n")
    ...     wavs, spks = read_cohort_list(path, "/data", utts_per_speaker=2)
    >>> wavs
    ['/data/wav/s1/a/1.wav', '/data/wav/s1/a/2.wav', '/data/wav/s2/c/1.wav']
    >>> spks
    ['s1', 's1', 's2']
    """
    if utts_per_speaker < 1:
        raise ValueError(
            f"utts_per_speaker must be positive, got {utts_per_speaker}"
        )
    files_of = {}
    with open(train_csv, newline="", encoding="utf-8") as csv_file:
        reader = csv.DictReader(csv_file)
        missing = {"wav", "spk_id"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{train_csv}: missing column(s) {sorted(missing)}; found "
                f"{reader.fieldnames}"
            )
        for row in reader:
            wav = row["wav"]
            if not os.path.isabs(wav):
                wav = os.path.join(data_folder, "wav", wav)
            files_of.setdefault(row["spk_id"], set()).add(wav)
    if not files_of:
        raise ValueError(f"{train_csv}: no training utterances")
    wav_paths, speaker_ids = [], []
    for speaker in sorted(files_of):
        kept = sorted(files_of[speaker])[:utts_per_speaker]
        wav_paths.extend(kept)
        speaker_ids.extend([speaker] * len(kept))
    return wav_paths, speaker_ids


def _named_trial_lists(trial_lists):
    """Accepts {name: path} or a list of paths (named by file stem)."""
    if isinstance(trial_lists, (str, os.PathLike)):
        trial_lists = [trial_lists]
    if isinstance(trial_lists, dict):
        named = {str(name): path for name, path in trial_lists.items()}
    else:
        named = {}
        for path in trial_lists:
            name = os.path.splitext(os.path.basename(path))[0]
            if name in named:
                raise ValueError(
                    f"two trial lists are named {name!r}; give them as a "
                    "{name: path} mapping"
                )
            named[name] = path
    if not named:
        raise ValueError("no trial lists given")
    return named


def verification_metrics(scores, labels, p_targets=(0.01, 0.05)):
    """EER (%) and normalised minDCF of scored trials.

    Arguments
    ---------
    scores : torch.Tensor
        One score per trial [T].
    labels : torch.Tensor
        One label per trial [T] (1 target, 0 non-target).
    p_targets : tuple of float
        Target priors of the reported minDCFs (c_miss = c_fa = 1).

    Returns
    -------
    dict
        ``eer`` (in %) and ``min_dcf_<p_target>`` for each prior.

    Example
    -------
    >>> import torch
    >>> metrics = verification_metrics(
    ...     torch.tensor([0.9, 0.2, 0.4, 0.1]), torch.tensor([1, 1, 0, 0])
    ... )
    >>> sorted(metrics), metrics["eer"]
    (['eer', 'min_dcf_0.01', 'min_dcf_0.05'], 50.0)
    """
    metrics = {"eer": 100.0 * compute_eer(scores, labels)[0]}
    for p_target in p_targets:
        metrics[f"min_dcf_{p_target:g}"] = compute_min_dcf(
            scores, labels, p_target=p_target
        )[0]
    return metrics


def evaluate_verification(
    encode_fn,
    data_folder,
    trial_lists,
    output_folder,
    backends=("cosine",),
    train_csv=None,
    cohort_utts_per_speaker=10,
    asnorm_top_n=300,
    plda_rank_f=100,
    plda_nb_iter=10,
    batch_size=8,
    device=None,
    sample_rate=16000,
    max_batch_seconds=None,
    num_workers=0,
    p_targets=(0.01, 0.05),
    utterance_paths=None,
    max_chunk_seconds=None,
):
    """Scores trial lists with whole-utterance embeddings and backends.

    Every unique utterance of all lists (and of the training cohort, when a
    backend needs one) is embedded once. Each backend then scores each list;
    the scores go to ``<output_folder>/scores/<list>_<backend>.txt`` (lines
    ``enrol test label score``).

    Backends: ``cosine``; ``asnorm`` (cosine with adaptive symmetric
    normalisation against one mean embedding per training speaker, top
    ``asnorm_top_n``); ``plda`` (SpeechBrain PLDA trained on the training
    utterances, length-normalised, rank ``min(plda_rank_f, D)``). ``asnorm``
    and ``plda`` need ``train_csv``.

    Arguments
    ---------
    encode_fn : callable
        ``encode_fn(wavs, wav_lens) -> [B, D] or [B, 1, D]`` (eval mode).
    data_folder : str
        Dataset root; trial utterances are under ``<data_folder>/wav``.
    trial_lists : dict or list
        ``{name: path}`` or a list of paths (named by their file stem).
    output_folder : str
        Where the score files are written.
    backends : sequence of str
        Any of ``cosine``, ``asnorm``, ``plda``.
    train_csv : str, optional
        Training CSV (columns ``wav``, ``spk_id``) of the cohort / PLDA
        utterances.
    cohort_utts_per_speaker : int
        Training files per speaker used at most.
    asnorm_top_n : int
        Cohort scores kept per utterance by AS-norm.
    plda_rank_f : int
        Rank of the PLDA speaker subspace (capped at the embedding size).
    plda_nb_iter : int
        PLDA EM iterations.
    batch_size : int
        Utterances per embedding batch.
    device : str, optional
        Device of the model (default: the accelerator if any).
    sample_rate : int
        Sample rate the encoder expects.
    max_batch_seconds : float, optional
        Cap on the audio per batch (utterances of equal length).
    num_workers : int
        Audio-reading worker processes.
    p_targets : tuple of float
        Target priors of the reported minDCFs.
    utterance_paths : dict, optional
        ``{trial utterance: audio file}`` for utterances stored elsewhere
        than ``<data_folder>/wav/<utterance>`` (e.g. the ``ID`` -> ``wav``
        columns of the prepared enrol/test CSVs, when the files were
        converted to another format); others are looked up under ``wav/``.

    max_chunk_seconds : float, optional
        Utterances longer than this are embedded in chunks, bounding memory
        (see ``compute_embeddings``).

    Returns
    -------
    dict
        ``{list_name: {backend: {"eer": %, "min_dcf_0.01": ..., ...}}}``.

    Example
    -------
    >>> evaluate_verification(None, "/data", [], "/tmp/out")
    Traceback (most recent call last):
    ...
    ValueError: no trial lists given
    """
    named = _named_trial_lists(trial_lists)
    backends = _checked_backends(backends, train_csv)
    if device is None:
        device = infer_device()

    def path_of(utt):
        return utterance_path(utt, data_folder, utterance_paths)

    trials = {}
    for name, path in named.items():
        trials[name] = read_trials(path)
        check_utterances_exist(trials[name], name, path, path_of)
    sides = [side for t in trials.values() for side in (t.enrol, t.test)]
    utterances, indices = index_utterances(*sides)
    wav_paths = [path_of(utt) for utt in utterances]
    cohort_paths, cohort_speakers = [], []
    if "asnorm" in backends or "plda" in backends:
        cohort_paths, cohort_speakers = read_cohort_list(
            train_csv, data_folder, cohort_utts_per_speaker
        )

    start = time.time()
    embeddings = compute_embeddings(
        encode_fn,
        wav_paths + cohort_paths,
        batch_size=batch_size,
        device=device,
        sample_rate=sample_rate,
        max_batch_seconds=max_batch_seconds,
        num_workers=num_workers,
        max_chunk_seconds=max_chunk_seconds,
    )
    logger.info(
        "Embedded %d utterances in %.1f s",
        embeddings.shape[0],
        time.time() - start,
    )
    scorers = _backend_scorers(
        backends,
        embeddings[: len(wav_paths)],
        (embeddings[len(wav_paths) :], cohort_speakers),
        device,
        asnorm_top_n=asnorm_top_n,
        plda_options={"rank_f": plda_rank_f, "nb_iter": plda_nb_iter},
    )
    return _scored_lists(trials, indices, scorers, output_folder, p_targets)


def _scored_lists(trials, indices, scorers, output_folder, p_targets):
    """Each list scored by each backend: the score files written, the
    metrics returned (``evaluate_verification``)."""
    metrics = {}
    for number, (name, trial) in enumerate(trials.items()):
        enrol_idx, test_idx = indices[2 * number], indices[2 * number + 1]
        metrics[name] = {}
        for backend, score in scorers.items():
            scores = score(enrol_idx, test_idx).cpu()
            write_scores(
                os.path.join(output_folder, "scores", f"{name}_{backend}.txt"),
                trial.enrol,
                trial.test,
                trial.labels,
                scores,
            )
            metrics[name][backend] = verification_metrics(
                scores, trial.labels, p_targets
            )
    return metrics


def _checked_backends(backends, train_csv):
    """The backends as a list, refused when unknown, or when one needs a
    cohort and no training CSV is given."""
    backends = list(backends)
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown or not backends:
        raise ValueError(
            f"unknown or no backend(s) {unknown}; choose from {BACKENDS}"
        )
    if ("asnorm" in backends or "plda" in backends) and not train_csv:
        raise ValueError(
            "the asnorm and plda backends need train_csv (training "
            "utterances for the cohort / PLDA model)"
        )
    return backends


def _backend_scorers(
    backends, embeddings, cohort, device, asnorm_top_n, plda_options
):
    """``{backend: score(enrol_idx, test_idx) -> scores}``: the PLDA model
    trained and the AS-norm cohort (one mean embedding per training
    speaker) built once, from ``cohort`` (embeddings, speakers)."""
    cohort_embeddings, cohort_speakers = cohort
    on_device = embeddings.to(device)
    scorers = {}
    for backend in backends:
        if backend == "cosine":
            scorers[backend] = functools.partial(cosine_scores, on_device)
        elif backend == "asnorm":
            means = speaker_mean_embeddings(cohort_embeddings, cohort_speakers)
            scorers[backend] = functools.partial(
                _asnorm, on_device, means[0].to(device), asnorm_top_n
            )
        else:
            rank_f = min(plda_options["rank_f"], embeddings.shape[1])
            plda = PLDABackend(rank_f=rank_f, nb_iter=plda_options["nb_iter"])
            plda.fit(cohort_embeddings, cohort_speakers)
            scorers[backend] = functools.partial(plda.score, embeddings)
    return scorers


def _asnorm(embeddings, cohort, top_n, enrol_idx, test_idx):
    """AS-norm scores, with the cohort and top-N bound first."""
    return asnorm_scores(embeddings, enrol_idx, test_idx, cohort, top_n=top_n)


def trained_speaker_overlap(trial_lists, label_encoder_file):
    """Warns about trial lists whose speakers a (teacher) model trained on.

    A speaker is the first component of a trial utterance's path
    (``<speaker>/<session>/<utt>``), as in VoxCeleb. The Hub teacher
    (``spkrec-ecapa-voxceleb``) was trained on VoxCeleb1 + VoxCeleb2 dev, so
    it has seen every speaker of Vox1-E and Vox1-H: a student distilled from
    it and scored on those lists is scored on speakers its teacher knew.
    Only Vox1-O is clean.

    Arguments
    ---------
    trial_lists : dict or list
        ``{name: path}`` or paths (named by file stem).
    label_encoder_file : str
        The model's ``label_encoder.txt`` (SpeechBrain ``CategoricalEncoder``
        format).

    Returns
    -------
    dict
        ``{list_name: (trained_speakers, list_speakers)}`` for every list
        with at least one speaker in the label encoder; each is also logged
        as a warning.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> tmp = tempfile.mkdtemp()
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["id1", "id2", "id9"])
    >>> encoder.save(os.path.join(tmp, "label_encoder.txt"))
    >>> with open(os.path.join(tmp, "H.txt"), "w") as f:
    ...     _ = f.write("1 id1/a/1.wav id1/b/2.wav" + chr(10))
    ...     _ = f.write("0 id1/a/1.wav id3/c/3.wav" + chr(10))
    >>> trained_speaker_overlap([os.path.join(tmp, "H.txt")],
    ...                         os.path.join(tmp, "label_encoder.txt"))
    {'H': (1, 2)}
    """
    encoder = CategoricalEncoder()
    encoder.load(label_encoder_file)
    overlap = {}
    for name, path in _named_trial_lists(trial_lists).items():
        trials = read_trials(path)
        speakers = {utt.split("/")[0] for utt in [*trials.enrol, *trials.test]}
        known = sorted(spk for spk in speakers if spk in encoder.lab2ind)
        if not known:
            continue
        overlap[name] = (len(known), len(speakers))
        logger.warning(
            "Trial list %s (%s): the model %s was trained on %d of its %d "
            "speakers (e.g. %s), so its scores there do not measure a "
            "student on unseen speakers",
            name,
            path,
            label_encoder_file,
            len(known),
            len(speakers),
            ", ".join(known[:3]),
        )
    return overlap


def format_results_table(metrics, trained_overlap=None):
    """Formats the metrics of :func:`evaluate_verification` as a table.

    Arguments
    ---------
    metrics : dict
        ``{list_name: {backend: {metric: value}}}``.
    trained_overlap : dict, optional
        From :func:`trained_speaker_overlap`: those lists are marked ``*``
        and a note under the table says how many speakers the teacher knew.

    Returns
    -------
    str
        One row per list and backend.

    Example
    -------
    >>> m = {"O": {"cosine": {"eer": 5.4412, "min_dcf_0.01": 0.41234}},
    ...      "H": {"cosine": {"eer": 7.1}}}
    >>> print(format_results_table(m))
    list  backend  eer     min_dcf_0.01
    O     cosine   5.4412  0.4123
    H     cosine   7.1000  -
    >>> print(format_results_table(m, {"H": (1190, 1190)}))
    list  backend  eer     min_dcf_0.01
    O     cosine   5.4412  0.4123
    H*    cosine   7.1000  -
    * the teacher was trained on speakers of this list (H: 1190 of 1190)
    """
    trained_overlap = trained_overlap or {}
    columns = []
    for per_backend in metrics.values():
        for values in per_backend.values():
            columns.extend(k for k in values if k not in columns)
    rows = [["list", "backend", *columns]]
    for name, per_backend in metrics.items():
        for backend, values in per_backend.items():
            cells = [
                f"{values[c]:.4f}" if c in values else "-" for c in columns
            ]
            label = f"{name}*" if name in trained_overlap else name
            rows.append([label, backend, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) for cell, w in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]
    if trained_overlap:
        counts = ", ".join(
            f"{name}: {known} of {total}"
            for name, (known, total) in trained_overlap.items()
        )
        lines.append(
            f"* the teacher was trained on speakers of this list ({counts})"
        )
    return "\n".join(lines)


def write_metrics(metrics, output_folder):
    """Writes the metrics as ``metrics.json`` and ``metrics.csv``.

    Arguments
    ---------
    metrics : dict
        ``{list_name: {backend: {metric: value}}}``.
    output_folder : str
        Destination folder (created when missing).

    Returns
    -------
    tuple of str
        The JSON and CSV paths.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _, csv_path = write_metrics({"O": {"cosine": {"eer": 5.0}}}, tmp)
    ...     print(open(csv_path).read().strip())
    list,backend,eer
    O,cosine,5.0
    """
    os.makedirs(output_folder, exist_ok=True)
    json_path = os.path.join(output_folder, "metrics.json")
    with open(json_path, "w", encoding="utf-8") as json_file:
        json.dump(metrics, json_file, indent=2)
    columns = []
    for per_backend in metrics.values():
        for values in per_backend.values():
            columns.extend(k for k in values if k not in columns)
    csv_path = os.path.join(output_folder, "metrics.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(["list", "backend", *columns])
        for name, per_backend in metrics.items():
            for backend, values in per_backend.items():
                writer.writerow(
                    [name, backend, *(values.get(c, "") for c in columns)]
                )
    return json_path, csv_path
