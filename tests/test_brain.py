"""Tests of DistillationBrain (speechbrain_trkd.brain) on generated speech.

The data are class-dependent harmonic tones plus noise, 0.5 to 0.6 s long,
the student a tiny ECAPA-TDNN and the teacher a tiny frozen ECAPA-TDNN with
more classes than the student (aligned by class_index_map).
"""

import math
import re
import shutil
import socket
import zipfile
from functools import partial
from typing import NamedTuple

import pytest
import speechbrain as sb
import torch
from speechbrain.augment.augmenter import Augmenter
from speechbrain.augment.time_domain import RandAmp
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from speechbrain.nnet.schedulers import (
    LinearScheduler,
    WarmAndExpDecayLRSchedule,
)
from speechbrain.processing.features import InputNormalization
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_trkd.brain import DistillationBrain, cosine_logits
from speechbrain_trkd.losses import DistillationLoss
from speechbrain_trkd.schedules import ExponentialTauSchedule
from speechbrain_trkd.teacher import FrozenTeacher, class_index_map

SAMPLE_RATE = 16000
N_MELS = 24
STUDENT_SPEAKERS = ["spk0", "spk1", "spk2", "spk3"]
# The teacher knows more speakers, in another order.
TEACHER_SPEAKERS = ["spk9", "spk2", "spk0", "spk7", "spk3", "spk1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run torch single-threaded: these models are tiny, and on a shared
    machine OpenMP threads spinning for busy cores cost far more than they
    bring."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_dataset(utts_per_speaker, seed):
    """Tones at a speaker-specific pitch with harmonics, plus white noise."""
    gen = torch.Generator().manual_seed(seed)
    data = {}
    for spk_index, spk in enumerate(STUDENT_SPEAKERS):
        for utt in range(utts_per_speaker):
            n_samples = int(
                SAMPLE_RATE * (0.5 + 0.1 * torch.rand(1, generator=gen).item())
            )
            data[f"{spk}_u{utt}_s{seed}"] = {
                "spk_id": spk,
                "pitch": 110.0 * 1.5**spk_index,
                "n_samples": n_samples,
                "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=gen)),
            }
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(STUDENT_SPEAKERS)
    dataset = DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("pitch", "n_samples", "seed")
    @sb.utils.data_pipeline.provides("sig")
    def signal(pitch, n_samples, seed):
        g = torch.Generator().manual_seed(seed)
        t = torch.arange(n_samples) / SAMPLE_RATE
        phase = 2 * math.pi * torch.rand(3, generator=g)
        wav = sum(
            torch.sin(2 * math.pi * pitch * k * t + phase[k - 1]) / k
            for k in (1, 2, 3)
        )
        return 0.3 * wav + 0.05 * torch.randn(n_samples, generator=g)

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label(spk_id):
        return encoder.encode_label_torch(spk_id)

    dataset.add_dynamic_item(signal)
    dataset.add_dynamic_item(label)
    dataset.set_output_keys(["id", "sig", "spk_id_encoded"])
    return dataset, encoder


def student_modules(seed=0):
    torch.manual_seed(seed)
    return {
        "compute_features": Fbank(n_mels=N_MELS),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": ECAPA_TDNN(
            N_MELS, channels=[32, 32, 32, 32, 96], lin_neurons=32
        ),
        "classifier": Classifier(32, out_neurons=len(STUDENT_SPEAKERS)),
    }


def teacher_modules():
    torch.manual_seed(123)
    return {
        "compute_features": Fbank(n_mels=N_MELS),
        "mean_var_norm": InputNormalization(
            norm_type="sentence", std_norm=False
        ),
        "embedding_model": ECAPA_TDNN(
            N_MELS, channels=[16, 16, 16, 16, 48], lin_neurons=40
        ),
        "classifier": Classifier(40, out_neurons=len(TEACHER_SPEAKERS)),
    }


def teacher_class_index(student_encoder):
    teacher_encoder = CategoricalEncoder()
    teacher_encoder.update_from_iterable(TEACHER_SPEAKERS)
    return class_index_map(teacher_encoder, student_encoder)


def pretrain_teacher(dataset, student_encoder, steps=20):
    """A few AAM steps, so that the teacher has knowledge to distil."""
    model = torch.nn.ModuleDict(teacher_modules())
    index = teacher_class_index(student_encoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    cost = aam_cost()
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_size=8, shuffle=True
    )
    done = 0
    while done < steps:
        for batch in loader:
            wavs, lens = batch.sig
            targets, _ = batch.spk_id_encoded
            feats = model["compute_features"](wavs)
            feats = model["mean_var_norm"](feats, lens)
            cosine = model["classifier"](model["embedding_model"](feats, lens))
            loss = cost(cosine[..., index], targets, lens)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_teacher(student_encoder, state=None):
    teacher = FrozenTeacher(**teacher_modules())
    if state is not None:
        teacher.load_state_dict(state)
    teacher.set_class_index(teacher_class_index(student_encoder))
    return teacher


def aam_cost():
    return LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))


class RecordingLogger(FileTrainLogger):
    """FileTrainLogger that also keeps the logged dictionaries."""

    def __init__(self, save_file):
        super().__init__(save_file, precision=4)
        self.records = []

    def log_stats(
        self,
        stats_meta,
        train_stats=None,
        valid_stats=None,
        test_stats=None,
        verbose=False,
    ):
        self.records.append((stats_meta, train_stats, valid_stats, test_stats))
        super().log_stats(
            stats_meta, train_stats, valid_stats, test_stats, verbose=verbose
        )


class RecordingBrain(DistillationBrain):
    """Records tau at every step; can crash before a given optimizer step."""

    crash_at_step = None

    def on_fit_batch_start(self, batch, should_step):
        if self.crash_at_step is not None:
            if self.optimizer_step == self.crash_at_step:
                raise RuntimeError("simulated crash")
        super().on_fit_batch_start(batch, should_step)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        self.step_taus.append(self.tau)
        super().on_fit_batch_end(batch, outputs, loss, should_step)


def make_brain(
    tmp_path,
    data,
    brain_class=DistillationBrain,
    seed=0,
    epochs=4,
    run_opts=None,
    **collaborators,
):
    modules = student_modules(seed)
    counter = EpochCounter(epochs)
    checkpointer = Checkpointer(
        tmp_path / "save",
        recoverables={
            "embedding_model": modules["embedding_model"],
            "classifier": modules["classifier"],
            "normalizer": modules["mean_var_norm"],
            "counter": counter,
        },
    )
    arguments = {
        "teacher": make_teacher(data.encoder, data.teacher_state),
        "kd_loss": DistillationLoss("trkd", temperature=4.0),
        "kd_weight": 1.0,
        "compute_cost": aam_cost(),
        "tau_schedule": ExponentialTauSchedule(
            start_epoch=0, stop_epoch=epochs, gamma=1e-2
        ),
        "train_logger": RecordingLogger(tmp_path / "train_log.txt"),
    }
    arguments.update(collaborators)
    options = {"device": "cpu", "noprogressbar": True}
    options.update(run_opts or {})
    brain = brain_class(
        modules=modules,
        opt_class=lambda params: torch.optim.Adam(params, lr=5e-3),
        hparams={"epoch_counter": counter},
        run_opts=options,
        checkpointer=checkpointer,
        **arguments,
    )
    brain.step_taus = []
    return brain, counter


def saved_tensors(folder):
    """Every tensor stored in the checkpoint folder (torch files only)."""
    tensors = []

    def collect(obj):
        if torch.is_tensor(obj):
            tensors.append(obj)
        elif isinstance(obj, dict):
            for value in obj.values():
                collect(value)
        elif isinstance(obj, list | tuple):
            for value in obj:
                collect(value)

    for path in folder.rglob("*.ckpt"):
        if zipfile.is_zipfile(path):  # not the text files (counter, brain)
            collect(torch.load(path, map_location="cpu", weights_only=True))
    return tensors


class Data(NamedTuple):
    train: DynamicItemDataset
    valid: DynamicItemDataset
    encoder: CategoricalEncoder
    teacher_state: dict


# Other tests' seed_everything() changes the seed of SpeechBrain's shuffling
# sampler (SB_GLOBAL_SEED): the teacher's pretraining and the fits below pin
# it, so that their outcome does not depend on which tests ran before.
SAMPLER_SEED = "563375142"


@pytest.fixture(scope="module")
def data(one_thread):
    torch.manual_seed(7)
    train, encoder = make_dataset(utts_per_speaker=4, seed=1)
    valid, _ = make_dataset(utts_per_speaker=1, seed=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SB_GLOBAL_SEED", SAMPLER_SEED)
        teacher_state = pretrain_teacher(train, encoder)
    return Data(train, valid, encoder, teacher_state)


def test_fit_distils_and_keeps_the_teacher_frozen(tmp_path, data, monkeypatch):
    monkeypatch.setenv("SB_GLOBAL_SEED", SAMPLER_SEED)
    train, valid = data.train, data.valid
    brain, counter = make_brain(
        tmp_path,
        data,
        epochs=3,
        lr_annealing=LinearScheduler(5e-3, 1e-3, 3),
    )
    teacher = brain.teacher
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    brain.fit(
        counter,
        train,
        valid,
        train_loader_kwargs={"batch_size": 4, "shuffle": True},
        valid_loader_kwargs={"batch_size": 8},
    )
    schedule = brain.tau_schedule
    assert schedule.steps_per_epoch == 4  # 16 utterances / batch 4
    assert brain.optimizer_step == 12

    records = brain.train_logger.records
    assert [meta["epoch"] for meta, *_ in records] == [1, 2, 3]
    first, last = records[0][1], records[-1][1]
    expected_keys = {
        "loss",
        "student_loss",
        "kd",
        "kd_mass",
        "kd_conf",
        "conf_size",
    }
    assert set(first) == expected_keys
    # Training works: the student's own loss and the total objective fall.
    assert last["student_loss"] < 0.6 * first["student_loss"]
    assert last["loss"] < 0.5 * first["loss"]
    # Total = student + kd_weight * kd, averaged over the same steps.
    for _, train_stats, _, _ in records:
        assert train_stats["loss"] == pytest.approx(
            train_stats["student_loss"] + train_stats["kd"], rel=1e-4
        )
        assert train_stats["kd"] == pytest.approx(
            train_stats["kd_mass"] + train_stats["kd_conf"], rel=1e-4
        )
        assert 1 <= train_stats["conf_size"] <= len(STUDENT_SPEAKERS) - 1
    # tau logged per epoch is the one used at the epoch's last step.
    for epoch, (meta, *_) in enumerate(records, start=1):
        assert meta["tau"] == schedule(4 * epoch - 1)
        assert "lr" in meta
    assert records[0][0]["lr"] == pytest.approx(5e-3)
    for _, _, valid_stats, _ in records:
        assert set(valid_stats) == {"loss", "ErrorRate"}
        assert 0.0 <= valid_stats["ErrorRate"] <= 1.0
    log_text = (tmp_path / "train_log.txt").read_text()
    for key in ("tau:", "train conf_size", "train kd_mass", "valid ErrorRate"):
        assert log_text.count(key) == 3

    # The teacher did not move, stayed in eval mode, never got a gradient.
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_state[name]), name
    assert not any(m.training for m in teacher.modules())
    assert all(p.grad is None for p in teacher.parameters())
    # Not optimised: the optimizer holds exactly the student's parameters.
    optimised = {
        id(p) for g in brain.optimizer.param_groups for p in g["params"]
    }
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert optimised == {id(p) for p in brain.modules.parameters()}
    # Not checkpointed: no saved tensor is a teacher tensor.
    saved = saved_tensors(tmp_path / "save")
    assert saved
    for name, param in teacher.named_parameters():
        assert not any(
            t.shape == param.shape and torch.equal(t, param) for t in saved
        ), name
    assert "teacher" not in brain.checkpointer.recoverables

    # Evaluation reloads the best checkpoint and logs test statistics.
    brain.evaluate(
        valid, min_key="ErrorRate", test_loader_kwargs={"batch_size": 3}
    )
    test_stats = brain.train_logger.records[-1][3]
    assert set(test_stats) == {"loss", "ErrorRate"}
    # The error rate is per utterance, whatever the batch sizes (3 and 1).
    wrong = []
    with torch.no_grad():
        for batch in brain.make_dataloader(valid, sb.Stage.TEST, batch_size=3):
            cosine = brain.compute_forward(batch, sb.Stage.TEST)["cosine"]
            targets = batch.spk_id_encoded.data.reshape(-1)
            wrong += (cosine.argmax(-1).reshape(-1) != targets).tolist()
    assert len(wrong) == len(valid) == 4
    assert test_stats["ErrorRate"] == pytest.approx(sum(wrong) / len(wrong))


def test_resume_mid_epoch_continues_tau_and_statistics(tmp_path, data):
    train = data.train
    loader_kwargs = {"batch_size": 6}  # 16 utterances: 3 steps per epoch
    run_opts = {"ckpt_interval_steps": 1}

    ref, counter = make_brain(
        tmp_path / "ref", data, RecordingBrain, epochs=2, run_opts=run_opts
    )
    ref.fit(counter, train, train_loader_kwargs=loader_kwargs)
    assert len(ref.step_taus) == 6

    crashed, counter = make_brain(
        tmp_path / "run", data, RecordingBrain, epochs=2, run_opts=run_opts
    )
    crashed.crash_at_step = 4  # in the middle of epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(counter, train, train_loader_kwargs=loader_kwargs)
    assert len(crashed.step_taus) == 4

    # A fresh process: new modules (other init), new schedule, same folder.
    resumed, counter = make_brain(
        tmp_path / "run",
        data,
        RecordingBrain,
        seed=99,
        epochs=2,
        run_opts=run_opts,
    )
    resumed.fit(counter, train, train_loader_kwargs=loader_kwargs)
    assert resumed.optimizer_step == 6
    taus = crashed.step_taus + resumed.step_taus
    assert taus == ref.step_taus
    assert len(set(taus)) == len(taus)  # tau moved at every step

    # Epoch 2, resumed after its first step, averages over all its steps.
    ref_records = ref.train_logger.records
    resumed_records = resumed.train_logger.records
    assert [m["epoch"] for m, *_ in resumed_records] == [2]
    for ref_rec, res_rec in zip(ref_records[1:], resumed_records, strict=True):
        assert res_rec[0]["tau"] == ref_rec[0]["tau"]
        assert res_rec[1] == pytest.approx(ref_rec[1], rel=1e-4)


def test_teacher_sees_the_augmented_batch_under_autocast(tmp_path, data):
    train = data.train
    augment = Augmenter(concat_original=True, augmentations=[RandAmp()])
    brain, counter = make_brain(
        tmp_path,
        data,
        epochs=1,
        wav_augment=augment,
        run_opts={"precision": "bf16"},
    )
    seen = []

    def spy(module, inputs, output):
        seen.append(
            (inputs[0].shape[0], torch.is_autocast_enabled("cpu"), output.dtype)
        )

    brain.teacher.embedding_model.register_forward_hook(spy)
    brain.fit(
        counter,
        train,
        train_loader_kwargs={"batch_size": 8, "drop_last": True},
    )
    # Original + augmented copy: the teacher gets twice the batch, and the
    # labels were replicated to match (the AAM loss would fail otherwise).
    assert [s[0] for s in seen] == [16, 16]
    assert all(s[1] for s in seen)
    assert all(s[2] == torch.bfloat16 for s in seen)
    stats = brain.train_stats
    assert all(math.isfinite(v) for v in stats.values())


def test_ddp_on_cpu_wraps_the_student_only(tmp_path, data, monkeypatch):
    train = data.train
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    try:
        brain, counter = make_brain(
            tmp_path,
            data,
            epochs=1,
            run_opts={"distributed_backend": "gloo"},
        )
        assert brain.distributed_launch
        brain.fit(counter, train, train_loader_kwargs={"batch_size": 8})
    finally:
        torch.distributed.destroy_process_group()
    ddp = torch.nn.parallel.DistributedDataParallel
    assert isinstance(brain.modules["embedding_model"], ddp)
    assert isinstance(brain.modules["classifier"], ddp)
    assert not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in brain.modules.modules()
    )
    teacher = brain.teacher
    assert not any(isinstance(m, ddp) for m in teacher.modules())
    assert brain.optimizer_step == 2
    assert math.isfinite(brain.train_stats["kd"])


def test_cosine_logits_margin_only_at_target():
    torch.manual_seed(0)
    cosine = torch.rand(5, 1, 7) * 2 - 1
    cosine[0, 0, 2] = 1.0  # the clamp keeps acos differentiable here
    targets = torch.tensor([[2], [0], [6], [3], [3]])
    plain = cosine_logits(cosine, targets, scale=30.0)
    assert torch.equal(plain, 30.0 * cosine)
    cosine.requires_grad_(True)
    margin = cosine_logits(cosine, targets, scale=30.0, margin=0.2)
    target_mask = torch.zeros(5, 1, 7, dtype=torch.bool)
    target_mask[torch.arange(5), 0, targets[:, 0]] = True
    assert torch.equal(margin[~target_mask], plain[~target_mask])
    theta = torch.acos(cosine.detach()[target_mask].clamp(-1 + 1e-7, 1 - 1e-7))
    expected = 30.0 * torch.cos((theta + 0.2).clamp(max=math.pi))
    assert torch.allclose(margin[target_mask], expected, atol=1e-4)
    assert (margin[target_mask] < plain[target_mask]).all()
    margin.sum().backward()
    assert torch.isfinite(cosine.grad).all()
    half = cosine_logits(cosine.detach().bfloat16(), targets, 30.0, 0.2)
    assert half.dtype == torch.float32


def test_configuration_errors(tmp_path, data):
    teacher = make_teacher(data.encoder, data.teacher_state)
    base = {
        "teacher": teacher,
        "kd_loss": DistillationLoss("kd"),
        "kd_weight": 1.0,
        "compute_cost": aam_cost(),
    }
    opts = {"device": "cpu", "noprogressbar": True}

    def build(modules=None, checkpointer=None, **changes):
        return DistillationBrain(
            modules=modules or student_modules(),
            run_opts=opts,
            checkpointer=checkpointer,
            **{**base, **changes},
        )

    with pytest.raises(ValueError, match="needs kd_loss"):
        build(kd_loss=None)
    with pytest.raises(TypeError, match="FrozenTeacher"):
        build(teacher=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="needs a teacher"):
        build(teacher=None)
    with pytest.raises(ValueError, match=r"modules\['teacher'\] holds"):
        build(modules={**student_modules(), "teacher": teacher})
    shared = {**student_modules(), "classifier": teacher.classifier}
    with pytest.raises(ValueError, match=r"modules\['classifier'\] shares"):
        build(modules=shared)
    with pytest.raises(ValueError, match="missing: classifier"):
        modules = student_modules()
        del modules["classifier"]
        build(modules=modules)
    with pytest.raises(ValueError, match="recoverable 'teacher_model'"):
        build(
            checkpointer=Checkpointer(
                tmp_path, {"teacher_model": teacher.embedding_model}
            )
        )
    with pytest.raises(ValueError, match="kd_margin"):
        build(kd_margin=-0.1)
    with pytest.raises(ValueError, match="kd_scale"):
        build(kd_scale=0.0)
    with pytest.raises(ValueError, match="kd_weight"):
        build(kd_weight=-1.0)


def test_unaligned_teacher_is_reported(tmp_path, data):
    train = data.train
    brain, counter = make_brain(tmp_path, data, epochs=1)
    brain.teacher.set_class_index(None)  # 6 teacher vs 4 student
    with pytest.raises(ValueError, match="set_class_index"):
        brain.fit(counter, train, train_loader_kwargs={"batch_size": 8})


def test_method_none_skips_the_teacher(tmp_path, data):
    train = data.train
    brain, counter = make_brain(
        tmp_path, data, epochs=1, kd_loss=DistillationLoss("none")
    )
    calls = []
    brain.teacher.register_forward_hook(lambda *args: calls.append(1))
    brain.fit(counter, train, train_loader_kwargs={"batch_size": 8})
    assert not calls
    assert set(brain.train_stats) == {"loss", "student_loss"}
    assert brain.train_stats["loss"] == pytest.approx(
        brain.train_stats["student_loss"], rel=1e-5
    )


def test_method_none_needs_no_teacher(tmp_path, data):
    brain, counter = make_brain(
        tmp_path, data, epochs=1, kd_loss=DistillationLoss("none"), teacher=None
    )
    brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    assert brain.optimizer_step == 2
    assert set(brain.train_stats) == {"loss", "student_loss"}
    meta = brain.train_logger.records[-1][0]
    assert "tau" not in meta  # no curriculum without TRKD


@pytest.mark.parametrize(
    "run_opts, expected",
    [
        ({}, 2),  # 16 utterances in batches of 8
        ({"grad_accumulation_factor": 2}, 1),
        ({"debug": True, "debug_batches": 1, "debug_epochs": 1}, 1),
    ],
)
def test_schedule_length_follows_the_loader(tmp_path, data, run_opts, expected):
    brain, counter = make_brain(
        tmp_path,
        data,
        epochs=1,
        run_opts=run_opts,
        kd_loss=DistillationLoss("none"),
        teacher=None,
    )
    brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    assert brain.tau_schedule.steps_per_epoch == expected
    assert brain.optimizer_step == expected


def test_schedule_length_error_when_no_step_fits(tmp_path, data):
    brain, counter = make_brain(
        tmp_path,
        data,
        epochs=1,
        run_opts={"grad_accumulation_factor": 3},
        kd_loss=DistillationLoss("none"),
        teacher=None,
    )
    with pytest.raises(ValueError, match="grad_accumulation_factor=3"):
        brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})


def test_lr_annealing_keeps_each_group_scale(tmp_path, data):
    """A parameter group with lr_scale follows the schedule at its scale."""

    class TwoGroupBrain(DistillationBrain):
        def init_optimizers(self):
            self.optimizer = torch.optim.Adam(
                [
                    {"params": self.modules.classifier.parameters()},
                    {
                        "params": self.modules.embedding_model.parameters(),
                        "lr_scale": 0.1,
                    },
                ],
                lr=5e-3,
            )
            self.optimizers_dict = {"opt_class": self.optimizer}

    brain, counter = make_brain(
        tmp_path,
        data,
        brain_class=TwoGroupBrain,
        epochs=2,
        lr_annealing=LinearScheduler(5e-3, 1e-3, 2),
    )
    brain.fit(
        counter,
        data.train,
        data.valid,
        train_loader_kwargs={"batch_size": 8},
        valid_loader_kwargs={"batch_size": 8},
    )
    head, backbone = (g["lr"] for g in brain.optimizer.param_groups)
    assert head == pytest.approx(1e-3)
    assert backbone == pytest.approx(1e-4)


def test_optimizer_step_limit_from_the_command_line(tmp_path, data):
    """--optimizer_step_limit arrives as a string; it still stops training."""
    brain, counter = make_brain(
        tmp_path, data, epochs=3, run_opts={"optimizer_step_limit": "3"}
    )
    brain.fit(
        counter,
        data.train,
        data.valid,
        train_loader_kwargs={"batch_size": 4},
        valid_loader_kwargs={"batch_size": 8},
    )
    assert brain.optimizer_step == 3


def test_kd_weight_warms_up_linearly(tmp_path, data):
    """With kd_warmup_epochs, each step's loss adds the KD term at a weight
    growing linearly from 0 to kd_weight, then constant."""
    brain, counter = make_brain(
        tmp_path, data, epochs=2, kd_weight=2.0, kd_warmup_epochs=1.5
    )
    weights = []
    original = brain._kd_weight_at
    brain._kd_weight_at = lambda step: (
        weights.append(original(step)) or (weights[-1])
    )
    brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    assert brain.steps_per_epoch == 2
    assert weights == pytest.approx([0.0, 2 / 3, 4 / 3, 2.0])


def test_kd_warmup_must_be_a_number_of_epochs(tmp_path, data):
    with pytest.raises(ValueError, match="kd_warmup_epochs must be"):
        make_brain(tmp_path, data, kd_warmup_epochs=-1.0)


def test_lr_step_schedule_warms_up_and_decays_per_step(tmp_path, data):
    """A SpeechBrain per-step scheduler, its step counts from epochs: each
    optimizer step runs at the scheduled rate, from the first one."""
    brain, counter = make_brain(
        tmp_path,
        data,
        epochs=2,
        lr_step_schedule=partial(
            WarmAndExpDecayLRSchedule, lr=0.1, decay_factor=0.01
        ),
        lr_warmup_epochs=1.0,
    )
    rates = []
    original = brain.fit_batch

    def recording_fit_batch(batch):
        rates.append(brain.optimizer.param_groups[0]["lr"])
        return original(batch)

    brain.fit_batch = recording_fit_batch
    brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    schedule = brain.lr_step_schedule
    assert (schedule.n_warmup_steps, schedule.decay_steps) == (2, 2)
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.01])
    assert "lr_step_schedule" in brain.checkpointer.recoverables
    assert brain.train_logger.records[-1][0]["lr"] == pytest.approx(0.001)


def test_an_interrupted_checkpoint_save_does_not_block_resuming(
    tmp_path, data, caplog
):
    """A checkpoint folder left without embedding_model.ckpt by a kill
    during its save is set aside (kept, renamed) and the run resumes from
    the last complete one; every epoch is in the train log once."""
    brain, counter = make_brain(tmp_path, data, epochs=2)
    brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    save = tmp_path / "save"
    (complete,) = [p for p in save.iterdir() if p.name.startswith("CKPT")]
    broken = save / (complete.name + "-later")
    shutil.copytree(complete, broken)
    meta = (broken / "CKPT.yaml").read_text()
    unixtime = float(re.search(r"unixtime: ([0-9.e+]+)", meta).group(1))
    (broken / "CKPT.yaml").write_text(
        meta.replace(str(unixtime), str(unixtime + 100))
    )
    (broken / "embedding_model.ckpt").unlink()
    with open(tmp_path / "train_log.txt", "a") as log:  # logged, then killed
        log.write("epoch: 3, lr: 1.00e-03 - train loss: 1.0\n")

    resumed, counter = make_brain(tmp_path, data, epochs=3)
    with caplog.at_level("WARNING"):
        resumed.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    assert "lacks embedding_model.ckpt" in caplog.text
    assert (save / f"INCOMPLETE-{broken.name}").is_dir()
    assert resumed.optimizer_step == 6  # 2 epochs recovered, 1 trained
    epochs = [
        line.split(",")[0]
        for line in (tmp_path / "train_log.txt").read_text().splitlines()
    ]
    assert epochs == ["epoch: 1", "epoch: 2", "epoch: 3"]


def test_a_non_finite_loss_never_reaches_the_weights(tmp_path, data, caplog):
    """A batch whose loss is NaN moves no weight; its utterances are named
    and training goes on."""
    brain, counter = make_brain(tmp_path, data, epochs=1)
    cost = brain.compute_cost
    calls = []

    def sometimes_nan(*args):
        calls.append(1)
        loss = cost(*args)
        return loss * float("nan") if len(calls) == 2 else loss

    brain.compute_cost = sometimes_nan
    snapshots = []
    original = brain.optimizers_step

    def recording_step():
        original()
        snapshots.append(
            [p.detach().clone() for p in brain.modules.parameters()]
        )

    brain.optimizers_step = recording_step
    with caplog.at_level("WARNING"):
        brain.fit(counter, data.train, train_loader_kwargs={"batch_size": 8})
    assert "Non-finite loss on the batch of" in caplog.text
    assert len(snapshots) == 2 and brain.optimizer_step == 1
    for before, after in zip(snapshots[0], snapshots[1], strict=True):
        assert torch.equal(before, after)
        assert torch.isfinite(after).all()
