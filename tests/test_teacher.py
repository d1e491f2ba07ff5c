"""Tests of FrozenTeacher and class_index_map (speechbrain_trkd.teacher)."""

import pathlib
import re
import shutil
import types

import pytest
import torch
from recipe_runner import RECIPE_ROWS, row_id
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.processing.features import InputNormalization

from speechbrain_trkd.pretrained import collect_pinned
from speechbrain_trkd.teacher import FrozenTeacher, class_index_map

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPE_DIR = REPO / "recipes" / "VoxCeleb" / "TRKD"
SHARED = REPO.parent / "shared"

HUB_TEACHER = SHARED / "models" / "spkrec-ecapa-voxceleb"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run torch single-threaded: these models are tiny, and on a shared
    machine OpenMP threads spinning for busy cores cost far more than they
    bring."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_teacher(n_classes=6, n_mels=20):
    torch.manual_seed(0)
    return FrozenTeacher(
        Fbank(n_mels=n_mels),
        InputNormalization(norm_type="sentence", std_norm=False),
        ECAPA_TDNN(n_mels, channels=[16, 16, 16, 16, 48], lin_neurons=24),
        Classifier(24, out_neurons=n_classes),
    )


def encoder(labels):
    enc = CategoricalEncoder()
    enc.update_from_iterable(labels)
    return enc


def test_teacher_is_frozen_and_stays_in_eval_mode():
    teacher = tiny_teacher()
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    teacher.train()
    teacher.train(True)
    torch.nn.ModuleDict({"t": teacher}).train()  # as Brain.fit does
    assert not any(m.training for m in teacher.modules())
    wavs = torch.randn(2, 4000, requires_grad=True)
    emb, cosine = teacher(wavs, torch.tensor([1.0, 0.6]))
    assert not emb.requires_grad and not cosine.requires_grad
    assert emb.shape == (2, 1, 24) and cosine.shape == (2, 1, 6)


def test_outputs_do_not_depend_on_train_calls():
    """Eval mode persists: BatchNorm uses running stats, not batch stats."""
    teacher = tiny_teacher()
    wavs = torch.randn(3, 4000)
    _, before = teacher(wavs)
    teacher.train()
    _, after = teacher(wavs)
    _, single = teacher(wavs[:1])  # batch statistics would change this
    assert torch.equal(before, after)
    assert torch.allclose(single[0], before[0], atol=1e-5)


def test_class_index_selects_columns_in_student_order():
    teacher = tiny_teacher(n_classes=6)
    wavs = torch.randn(2, 4000)
    _, full = teacher(wavs)
    t_enc = encoder(["a", "b", "c", "d", "e", "f"])
    s_enc = encoder(["e", "a", "c"])
    idx = class_index_map(t_enc, s_enc)
    assert idx.dtype == torch.long
    assert idx.tolist() == [4, 0, 2]
    teacher.set_class_index(idx)
    assert teacher.num_classes == 3 and teacher.num_teacher_classes == 6
    _, aligned = teacher(wavs)
    assert torch.equal(aligned, full[..., [4, 0, 2]])
    teacher.set_class_index(None)
    _, again = teacher(wavs)
    assert torch.equal(again, full)


def test_class_index_is_a_buffer_that_moves_with_the_module():
    teacher = tiny_teacher()
    teacher.set_class_index([1, 3])
    assert "class_index" in dict(teacher.named_buffers())
    assert "class_index" not in teacher.state_dict()  # never checkpointed
    moved = teacher.to(torch.float64)
    assert moved.class_index.dtype == torch.long  # ints are not cast
    assert moved.class_index.device == next(teacher.parameters()).device


def test_missing_student_speakers_are_named():
    t_enc = encoder(["id1", "id2", "id3"])
    s_enc = encoder(["id2"] + [f"new{i}" for i in range(7)])
    with pytest.raises(ValueError) as info:
        class_index_map(t_enc, s_enc)
    message = str(info.value)
    assert "7 of the student's 8 speakers" in message
    for i in range(5):
        assert f"'new{i}'" in message
    assert "'new6'" not in message and "..." in message


def test_student_encoder_must_be_contiguous_and_non_empty():
    t_enc = encoder(["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        class_index_map(t_enc, CategoricalEncoder())
    gappy = CategoricalEncoder()
    gappy.insert_label("a", 0)
    gappy.insert_label("b", 2)
    with pytest.raises(ValueError, match="without gaps"):
        class_index_map(t_enc, gappy)


@pytest.mark.parametrize(
    "index, error, message",
    [
        ([0, 6], ValueError, "teacher class 6"),
        ([-1], ValueError, "negative"),
        ([1, 1], ValueError, "same teacher class"),
        ([[0, 1]], ValueError, "1-D"),
        ([], ValueError, "non-empty"),
        ([0.0, 1.0], TypeError, "integers"),
    ],
)
def test_bad_class_index_is_rejected(index, error, message):
    teacher = tiny_teacher(n_classes=6)
    with pytest.raises(error, match=message):
        teacher.set_class_index(torch.tensor(index))


def test_rejects_non_batch_waveforms():
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        tiny_teacher()(torch.randn(4000))


@pytest.mark.skipif(
    not HUB_TEACHER.is_dir(),
    reason=f"real SpeechBrain ECAPA teacher not found at {HUB_TEACHER}",
)
def test_real_hub_teacher(tmp_path):
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.parameter_transfer import Pretrainer

    with open(HUB_TEACHER / "hyperparams.yaml", encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(
            fin, overrides={"pretrained_path": str(HUB_TEACHER)}
        )
    label_encoder = hparams["label_encoder"]
    pretrainer = Pretrainer(
        collect_in=tmp_path / "collected",
        loadables={
            "embedding_model": hparams["embedding_model"],
            "classifier": hparams["classifier"],
            "label_encoder": label_encoder,
        },
        paths={
            "embedding_model": str(HUB_TEACHER / "embedding_model.ckpt"),
            "classifier": str(HUB_TEACHER / "classifier.ckpt"),
            "label_encoder": str(HUB_TEACHER / "label_encoder.txt"),
        },
    )
    pretrainer.collect_files()
    pretrainer.load_collected()
    teacher = FrozenTeacher(
        hparams["compute_features"],
        hparams["mean_var_norm"],
        hparams["embedding_model"],
        hparams["classifier"],
    )
    assert teacher.num_teacher_classes == 7205
    assert len(label_encoder) == 7205
    torch.manual_seed(0)
    wavs = 0.1 * torch.randn(2, 16000)
    lens = torch.tensor([1.0, 0.5])
    emb, cosine = teacher(wavs, lens)
    assert emb.shape == (2, 1, 192)
    assert cosine.shape == (2, 1, 7205)
    assert torch.isfinite(cosine).all() and cosine.abs().max() <= 1.0 + 1e-5
    # The weights are the pretrained ones, not a random initialisation.
    saved = torch.load(HUB_TEACHER / "classifier.ckpt", map_location="cpu")
    assert torch.equal(saved["weight"], teacher.classifier.weight)

    labels = [label_encoder.ind2lab[i] for i in (7204, 3, 1500)]
    student_enc = encoder(labels)
    idx = class_index_map(label_encoder, student_enc)
    assert idx.tolist() == [7204, 3, 1500]
    teacher.set_class_index(idx)
    _, aligned = teacher(wavs, lens)
    assert aligned.shape == (2, 1, 3)
    assert torch.allclose(aligned, cosine[..., [7204, 3, 1500]], atol=1e-6)
    with pytest.raises(ValueError, match="'not_a_voxceleb_id'"):
        class_index_map(label_encoder, encoder(["not_a_voxceleb_id"]))


def test_teacher_pins_and_damaged_files_are_named(recipe_runner, tmp_path):
    """A wrong sha256 pin stops the run before the teacher loads; a damaged
    teacher label encoder is named by its real path, not the collected
    link."""
    row = next(r for r in RECIPE_ROWS if row_id(r) == "ecapa_to_small")
    teacher = recipe_runner.teacher_export("finetune_teacher")
    with pytest.raises(pytest.fail.Exception):
        recipe_runner.run(
            row,
            name="pinned",
            extra_flags=(
                "--teacher_sha256={classifier.ckpt: " + "ab" * 32 + "}",
            ),
        )
    log = (recipe_runner.root / "pinned" / "log.txt").read_text()
    assert "classifier.ckpt has sha256" in log
    damaged = tmp_path / "teacher"
    shutil.copytree(teacher, damaged)
    (damaged / "label_encoder.txt").write_text("'a' => 0\nbroken\n")
    row = dict(row)
    row["test_debug_flags"] = re.sub(
        r"--teacher_source=\S+",
        f"--teacher_source={damaged}",
        row["test_debug_flags"],
    )
    with pytest.raises(pytest.fail.Exception):
        recipe_runner.run(row, name="damaged")
    log = (recipe_runner.root / "damaged" / "log.txt").read_text()
    assert f"{damaged}/label_encoder.txt is damaged" in log


def fake_hub(monkeypatch, served, calls):
    """Serves ``served/<file>`` for any Hub download, recording its
    arguments (no network)."""
    import huggingface_hub

    def download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename, revision))
        return str(served / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)


def load_recipe_hparams(name, tmp_path):
    from hyperpyyaml import load_hyperpyyaml

    hparams_file = RECIPE_DIR / "hparams" / f"{name}.yaml"
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "run"),
        "noise_csv": None,
        "rir_csv": None,
    }
    text = hparams_file.read_text(encoding="utf-8")
    names = [key for key in overrides if f"\n{key}:" in "\n" + text]
    # From the file, so that its !include paths resolve beside it.
    with open(hparams_file, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, {k: overrides[k] for k in names})


@pytest.mark.parametrize(
    "name",
    [
        "ecapa_to_small",
        "ecapa_to_small_paper",
        "ecapa_to_resnet",
        "finetune_teacher",
    ],
)
def test_the_hub_teacher_is_fetched_at_the_pinned_revision(
    name, tmp_path, monkeypatch
):
    hparams = load_recipe_hparams(name, tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", hparams["teacher_revision"])
    served = tmp_path / "served"
    served.mkdir()
    pretrainer = hparams["pretrainer"]
    for name, path in pretrainer.paths.items():
        loadable = pretrainer.loadables[name]
        if isinstance(loadable, CategoricalEncoder):
            loadable.update_from_iterable(["a"])
            loadable.save(served / pathlib.Path(path).name)
        else:
            torch.save(loadable.state_dict(), served / pathlib.Path(path).name)
    files = {pathlib.Path(path).name for path in pretrainer.paths.values()}
    calls = []
    fake_hub(monkeypatch, served, calls)
    collect_pinned(pretrainer, hparams["teacher_revision"])
    assert {(repo, revision) for repo, _, revision in calls} == {
        (hparams["teacher_source"], hparams["teacher_revision"])
    }
    assert {filename for _, filename, _ in calls} == files


def test_a_revision_the_hub_lacks_is_named(tmp_path, monkeypatch):
    import huggingface_hub
    from speechbrain.utils.parameter_transfer import Pretrainer

    def missing(repo_id, filename, revision=None, **kwargs):
        response = types.SimpleNamespace(headers={}, request=None)
        raise huggingface_hub.errors.RevisionNotFoundError(
            f"no {revision}", response=response
        )

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    pretrainer = Pretrainer(
        collect_in=tmp_path,
        loadables={"layer": torch.nn.Linear(2, 2)},
        paths={"layer": "owner/model/layer.ckpt"},
    )
    with pytest.raises(ValueError, match="no revision 0123abc for owner/model"):
        collect_pinned(pretrainer, "0123abc")


def test_a_missing_local_teacher_folder_is_named(tmp_path):
    """A teacher_source that can only be a folder, and is not there, is
    named as a missing folder (it used to reach the Hub as a repo id)."""
    hparams = load_recipe_hparams("ecapa_to_small", tmp_path)
    pretrainer = hparams["pretrainer"]
    missing = tmp_path / "no_teacher"
    for name in pretrainer.paths:
        pretrainer.paths[name] = str(missing / f"{name}.ckpt")
    with pytest.raises(
        FileNotFoundError,
        match=rf"teacher_source={missing}: no such folder.*--teacher_source=",
    ):
        collect_pinned(pretrainer, hparams["teacher_revision"])


def test_an_unreachable_hub_names_the_local_teacher_flag(tmp_path, monkeypatch):
    """Offline, the Hub teacher's failure says how to give a local one."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, filename, revision=None, **kwargs):
        raise LocalEntryNotFoundError("no connection")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    hparams = load_recipe_hparams("ecapa_to_small", tmp_path)
    with pytest.raises(OSError, match=r"Offline, .*--teacher_source=<folder>"):
        collect_pinned(hparams["pretrainer"], hparams["teacher_revision"])


@pytest.mark.parametrize(
    "flag, held",
    [("teacher_channels", "32 channels"), ("emb_dim", "6 classes of 192")],
)
def test_teacher_sizes_that_differ_from_its_weights_are_named(
    recipe_runner, tmp_path, flag, held
):
    """A teacher built at other sizes than its weights (the recipe tests'
    teacher, C=32, given --teacher_channels=16, or a head of another
    embedding size) stops naming the file, the sizes the weights hold and
    the flags, instead of a raw size mismatch."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_trkd.teacher_loading import load_teacher

    export = recipe_runner.teacher_export("finetune_teacher")
    speakers = CategoricalEncoder()
    speakers.load(str(pathlib.Path(export) / "label_encoder.txt"))
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "run"),
        "teacher_source": export,
        "teacher_n_classes": len(speakers),
        "teacher_channels": 16 if flag == "teacher_channels" else 32,
    }
    with open(RECIPE_DIR / "hparams" / "ecapa_to_small.yaml") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    teacher = hparams["teacher"]
    if flag == "emb_dim":
        teacher.classifier.weight.data = torch.zeros(len(speakers), 96)
    with pytest.raises(
        ValueError, match=rf"does not fit .*holds {held}.*--teacher_channels"
    ):
        load_teacher(
            hparams["pretrainer"],
            teacher,
            speakers,
            revision=None,
            sha256=None,
            source=export,
            n_classes=len(speakers),
        )


def test_a_local_teacher_is_sized_from_its_weights(recipe_runner, tmp_path):
    """--teacher_source=<folder> alone builds the teacher at the sizes its
    weights hold (the recipe tests' teacher: C=32, 6 speakers), where the
    hparams' Hub defaults (C=1024, 7205 classes) failed on a raw size
    mismatch; the sizes are saved with the run's settings."""
    from speechbrain_trkd.training_run import training_run

    export = recipe_runner.teacher_export("finetune_teacher")
    argv = [
        str(RECIPE_DIR / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={tmp_path}",
        f"--output_folder={tmp_path / 'run'}",
        f"--teacher_source={export}",
    ]
    with training_run(argv) as (hparams, _, _, overrides):
        teacher = hparams["teacher"]
        assert hparams["teacher_channels"] == 32
        assert (
            hparams["teacher_n_classes"] == recipe_runner.values["n_speakers"]
        )
        assert "teacher_channels: 32" in overrides
    assert teacher.classifier.weight.shape[0] == hparams["teacher_n_classes"]


@pytest.mark.parametrize(
    "flag, held",
    [("--teacher_channels=16", 32), ("--teacher_n_classes=7", 6)],
)
def test_a_size_flag_that_disagrees_with_the_weights_is_named(
    recipe_runner, tmp_path, flag, held
):
    """A given size flag that the weights contradict stops the run before
    any folder is made, naming the flag and the value the weights hold."""
    from speechbrain_trkd.training_run import training_run

    export = recipe_runner.teacher_export("finetune_teacher")
    argv = [
        str(RECIPE_DIR / "hparams" / "ecapa_to_small.yaml"),
        f"--data_folder={tmp_path}",
        f"--output_folder={tmp_path / 'run'}",
        f"--teacher_source={export}",
        flag,
    ]
    with pytest.raises(ValueError, match=rf"^{flag}, but .* hold {held}: "):
        with training_run(argv):
            pass
    assert not (tmp_path / "run").exists()
