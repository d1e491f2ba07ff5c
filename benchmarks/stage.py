#!/usr/bin/env python3
"""Stage the teacher and the corpus for the device tool's calls.

The device tool carries at most 64 MiB per call (the working tree
included), and its machine keeps ``/root/stage`` between back-to-back
calls. This script writes ``<stage_folder>/call1``, ``call2``, ... (the
repository ignores ``/.stage/``), each to be carried by one call and copied
into ``/root/stage``:

* ``call1/teacher``: the pretrained teacher in its Hub layout, every
  floating-point tensor stored as float16 (loading copies them back into
  the float32 model);
* ``call<N>/<corpus name>/...``: the corpus (``wav/``, ``trials/``,
  ``speakers.csv``, ``README.md``), files packed in path order into the
  calls. With ``--train_kbps`` the training speakers' files (those in no
  trial list) are re-encoded as Ogg Opus at about that bit rate, so that
  fewer calls carry them; the trial lists' audio is always copied byte for
  byte. ``stage_manifest.json`` at the corpus root records what was done.

The wheels the device lacks are downloaded into ``.whl`` by the commands
:func:`wheel_commands` prints (see ``benchmarks/README.md``).

To run::

    python benchmarks/stage.py --train_kbps 20

Authors
 * speechbrain-trkd developers 2026
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile
import torch
from speechbrain.dataio import audio_io

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from audio_cache import list_audio_files  # noqa: E402

MIB = 2**20
# libsndfile maps its compression level linearly onto Opus bit rates from
# about 256 kbit/s (level 0) down to 6 kbit/s (level 1).
OPUS_MAX_KBPS = 256.0
OPUS_MIN_KBPS = 6.0
WHEELS = (
    "speechbrain==1.1.2",
    "hyperpyyaml==1.2.3",
    "ruamel.yaml==0.18.17",
    "ruamel.yaml.clib==0.2.15",
    "soundfile==0.14.0",
    "cffi==2.0.0",
    "pycparser==3.0",
)
CORPUS_FILES = ("speakers.csv", "README.md")


def opus_level(kbps):
    """libsndfile's compression level for an Opus bit rate.

    Arguments
    ---------
    kbps : float
        Target bit rate in kbit/s.

    Returns
    -------
    float
        In [0, 1].

    Example
    -------
    >>> round(opus_level(256.0), 3), round(opus_level(6.0), 3)
    (0.0, 1.0)
    >>> opus_level(2.0)
    Traceback (most recent call last):
    ...
    ValueError: train_kbps must lie in [6.0, 256.0] kbit/s, got 2.0
    """
    if not OPUS_MIN_KBPS <= kbps <= OPUS_MAX_KBPS:
        raise ValueError(
            f"train_kbps must lie in [{OPUS_MIN_KBPS}, {OPUS_MAX_KBPS}] "
            f"kbit/s, got {kbps}"
        )
    return (OPUS_MAX_KBPS - kbps) / (OPUS_MAX_KBPS - OPUS_MIN_KBPS)


def half_precision_teacher(source, destination):
    """Copies a Hub-layout model folder with float16 checkpoints.

    Arguments
    ---------
    source : str
        Folder with ``hyperparams.yaml``, ``*.ckpt`` and text files.
    destination : str
        Created; receives the same files.

    Returns
    -------
    int
        Bytes written.

    Example
    -------
    >>> import tempfile
    >>> src, dst = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> torch.save({"w": torch.ones(4), "n": torch.tensor(3)},
    ...            os.path.join(src, "embedding_model.ckpt"))
    >>> _ = open(os.path.join(src, "hyperparams.yaml"), "w").write("a: 1\\n")
    >>> _ = half_precision_teacher(src, dst)
    >>> state = torch.load(os.path.join(dst, "embedding_model.ckpt"))
    >>> state["w"].dtype, state["n"].dtype
    (torch.float16, torch.int64)
    """
    if not os.path.isfile(os.path.join(source, "hyperparams.yaml")):
        raise FileNotFoundError(f"no hyperparams.yaml in teacher {source}")
    os.makedirs(destination, exist_ok=True)
    total = 0
    for name in sorted(os.listdir(source)):
        path = os.path.join(source, name)
        target = os.path.join(destination, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".ckpt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"{path}: not a state dict")
            state = {
                key: (
                    value.half()
                    if torch.is_tensor(value) and value.is_floating_point()
                    else value
                )
                for key, value in state.items()
            }
            torch.save(state, target)
        else:
            shutil.copyfile(path, target)
        total += os.path.getsize(target)
    return total


def trial_speakers(data_folder):
    """Speakers named in any ``<data_folder>/trials/*.txt`` list.

    Arguments
    ---------
    data_folder : str
        The corpus root.

    Returns
    -------
    set of str

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "trials"))
    >>> with open(os.path.join(root, "trials", "O.txt"), "w") as f:
    ...     _ = f.write("1 a/s/1.wav b/s/2.wav\\n")
    >>> sorted(trial_speakers(root))
    ['a', 'b']
    """
    speakers = set()
    for trials in sorted(Path(data_folder, "trials").glob("*.txt")):
        with open(trials, encoding="utf-8") as fin:
            for line in fin:
                fields = line.split()
                speakers.update(f.split("/")[0] for f in fields[1:3])
    return speakers


def _reencode(job):
    """Re-encodes one file as Ogg Opus at a compression level."""
    source, target, level = job
    signal, rate = audio_io.load(source, dtype=torch.float32)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    soundfile.write(
        target,
        signal.mean(dim=0).numpy(),
        rate,
        format="OGG",
        subtype="OPUS",
        compression_level=level,
    )
    return os.path.getsize(target)


def pack(sizes, budgets):
    """Assigns files, in order, to the first call with room left.

    Arguments
    ---------
    sizes : list of int
        File sizes in bytes, in the order to pack them.
    budgets : list of int
        Room in bytes of call 1; the last entry is repeated for any
        further call.

    Returns
    -------
    list of int
        The call (0-based) of each file.

    Example
    -------
    >>> pack([5, 5, 5, 5], [8, 12])
    [0, 1, 1, 2]
    >>> pack([20], [8, 12])
    Traceback (most recent call last):
    ...
    ValueError: a file of 20 bytes exceeds the room of any call (12)
    """
    calls, used, call = [], 0, 0
    for size in sizes:
        if size > budgets[-1]:
            raise ValueError(
                f"a file of {size} bytes exceeds the room of any call "
                f"({budgets[-1]})"
            )
        while used + size > budgets[min(call, len(budgets) - 1)]:
            call, used = call + 1, 0
        calls.append(call)
        used += size
    return calls


def travelling_tree_bytes():
    """Bytes of the working tree that every device call carries.

    Returns
    -------
    int
        Tracked and untracked, not ignored files of the repository.

    Example
    -------
    >>> travelling_tree_bytes() > 0
    True
    """
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    total = 0
    for name in listed:
        path = REPO / name.decode()
        if name and path.is_file():
            total += path.stat().st_size
    return total


def wheel_commands(wheel_folder=".whl"):
    """The commands that download the wheels the device lacks.

    Arguments
    ---------
    wheel_folder : str
        Download folder (ignored by the repository).

    Returns
    -------
    list of str

    Example
    -------
    >>> wheel_commands()[0].split()[:4]
    ['python3', '-m', 'pip', 'download']
    """
    platforms = " ".join(
        f"--platform {p}"
        for p in (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux1_x86_64",
        )
    )
    return [
        "python3 -m pip download --no-deps --only-binary=:all: "
        f"--python-version 3.12 --implementation cp {platforms} "
        f"-d {wheel_folder} {spec}"
        for spec in WHEELS
    ]


def stage(
    data_folder,
    teacher_source,
    stage_folder,
    call_mib=63.0,
    train_kbps=None,
    wheel_folder=".whl",
    jobs=None,
):
    """Writes the per-call folders; returns the manifest.

    Arguments
    ---------
    data_folder : str
        The corpus root (VoxCeleb layout, ``trials/``).
    teacher_source : str
        The pretrained teacher folder.
    stage_folder : str
        Output; ``call1``, ``call2``, ... are (re)created in it.
    call_mib : float
        What one call may carry, in MiB (the tool's limit is 64), the
        working tree and, in call 1, the wheels included.
    train_kbps : float, optional
        Re-encode the training speakers' files at this Opus bit rate.
    wheel_folder : str
        Wheels carried with call 1 (counted when present).
    jobs : int, optional
        Re-encoding processes (default: the CPU count).

    Returns
    -------
    dict
        Also written as ``stage_manifest.json`` at the staged corpus root.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_trkd.synthetic import make_synthetic_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> corpus = make_synthetic_corpus(
    ...     os.path.join(tmp, "corpus"), n_train_speakers=2,
    ...     n_dev_speakers=2, sessions_per_speaker=1,
    ...     utterances_per_session=2, duration=(1.0, 1.5))
    >>> teacher = os.path.join(tmp, "teacher")
    >>> os.makedirs(teacher)
    >>> _ = open(os.path.join(teacher, "hyperparams.yaml"), "w").write("")
    >>> manifest = stage(corpus.folder, teacher, os.path.join(tmp, "stage"),
    ...                  train_kbps=16, jobs=1)
    >>> manifest["calls"], manifest["reencoded_files"]
    (1, 4)
    """
    stage_folder = os.path.abspath(stage_folder)
    name = os.path.basename(os.path.normpath(data_folder))
    for old in Path(stage_folder).glob("call*"):
        shutil.rmtree(old)
    teacher_bytes = half_precision_teacher(
        teacher_source, os.path.join(stage_folder, "call1", "teacher")
    )
    wheel_bytes = sum(
        p.stat().st_size for p in Path(wheel_folder).glob("*.whl")
    )
    tree = travelling_tree_bytes()
    room = int(call_mib * MIB) - tree
    budgets = [room - teacher_bytes - wheel_bytes, room]
    if budgets[0] < 0:
        raise ValueError(
            f"the teacher ({teacher_bytes / MIB:.1f} MiB) and wheels "
            f"({wheel_bytes / MIB:.1f} MiB) leave no room in call 1 "
            f"(call_mib={call_mib}, working tree {tree / MIB:.1f} MiB)"
        )
    held_out = trial_speakers(data_folder)
    audio = list_audio_files(data_folder)
    level = None if train_kbps is None else opus_level(train_kbps)
    tmp = os.path.join(stage_folder, "reencoded")
    reencode = [
        rel
        for rel in audio
        if level is not None and rel.split("/")[1] not in held_out
    ]
    renamed = {rel: str(Path(rel).with_suffix(".opus")) for rel in reencode}
    if reencode:
        jobs_list = [
            (
                os.path.join(data_folder, rel),
                os.path.join(tmp, renamed[rel]),
                level,
            )
            for rel in reencode
        ]
        if jobs == 1:
            list(map(_reencode, jobs_list))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(_reencode, jobs_list, chunksize=16))
    meta = [
        str(p.relative_to(data_folder))
        for p in sorted(Path(data_folder, "trials").glob("*"))
    ]
    meta += [f for f in CORPUS_FILES if os.path.isfile(Path(data_folder, f))]
    files, sources = [], []
    for rel in meta + audio:
        if rel in renamed:
            files.append(renamed[rel])
            sources.append(os.path.join(tmp, renamed[rel]))
        else:
            files.append(rel)
            sources.append(os.path.join(data_folder, rel))
    sizes = [os.path.getsize(src) for src in sources]
    calls = pack(sizes, budgets)
    for rel, src, call in zip(files, sources, calls, strict=True):
        target = os.path.join(stage_folder, f"call{call + 1}", name, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
    shutil.rmtree(tmp, ignore_errors=True)
    n_calls = max(calls) + 1
    per_call = [0] * n_calls
    for size, call in zip(sizes, calls, strict=True):
        per_call[call] += size
    per_call[0] += teacher_bytes
    manifest = {
        "source": os.path.abspath(data_folder),
        "teacher_source": os.path.abspath(teacher_source),
        "teacher_dtype": "float16",
        "teacher_mib": teacher_bytes / MIB,
        "train_kbps": train_kbps,
        "reencoded_files": len(renamed),
        "copied_files": len(files) - len(renamed),
        "calls": n_calls,
        "call_mib": [b / MIB for b in per_call],
        "working_tree_mib": tree / MIB,
        "wheels_mib": wheel_bytes / MIB,
    }
    manifest_path = os.path.join(
        stage_folder, f"call{n_calls}", name, "stage_manifest.json"
    )
    with open(manifest_path, "w", encoding="utf-8") as fout:
        json.dump(manifest, fout, indent=2)
    return manifest


def main(argv=None):
    """Command line: stages the data and prints the next commands.

    Arguments
    ---------
    argv : list of str, optional
        The command line (``sys.argv[1:]`` by default).

    Returns
    -------
    dict
        The manifest.

    Example
    -------
    >>> main(["--train_kbps", "1"])
    Traceback (most recent call last):
    ...
    ValueError: train_kbps must lie in [6.0, 256.0] kbit/s, got 1.0
    """
    shared = REPO.parent / "shared"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_folder", default=str(shared / "data" / "openspk")
    )
    parser.add_argument(
        "--teacher_source",
        default=str(shared / "models" / "spkrec-ecapa-voxceleb"),
    )
    parser.add_argument("--stage_folder", default=str(REPO / ".stage"))
    parser.add_argument("--call_mib", type=float, default=63.0)
    parser.add_argument("--train_kbps", type=float, default=None)
    parser.add_argument("--wheel_folder", default=str(REPO / ".whl"))
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    if args.train_kbps is not None:
        opus_level(args.train_kbps)
    manifest = stage(
        args.data_folder,
        args.teacher_source,
        args.stage_folder,
        call_mib=args.call_mib,
        train_kbps=args.train_kbps,
        wheel_folder=args.wheel_folder,
        jobs=args.jobs,
    )
    print(json.dumps(manifest, indent=2))
    if not any(Path(args.wheel_folder).glob("*.whl")):
        print("No wheels yet; download them, then stage again:")
        print("\n".join(wheel_commands(os.path.relpath(args.wheel_folder))))
    return manifest


if __name__ == "__main__":
    main()
