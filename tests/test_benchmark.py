"""Smoke tests of the benchmark harness on a tiny generated corpus.

The whole harness runs end to end (audio cache, preparation, teacher head,
zero-shot scoring, throughput with the profiler, students trained by
``train_trkd.py`` processes reading the decoded corpus,
an extra trial list on another corpus, the report), then runs again and
must resume without training anything twice. The CPU profile runs too:
a teacher used as it is, the teacher cache, one-thread workers, one result
file per run, and the cached-over-online step ratio.
"""

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from recipe_runner import REPO

from speechbrain_trkd.metrics import compute_eer
from speechbrain_trkd.synthetic import make_synthetic_corpus
from speechbrain_trkd.trials import write_scores

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_config  # noqa: E402
import report  # noqa: E402
import run_benchmark  # noqa: E402


def read_csv(path):
    """Header and rows of a CSV file."""
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def bench_run(recipe_runner, tmp_path_factory):
    """Runs the harness once on the recipe tests' corpus and teacher."""
    root = tmp_path_factory.mktemp("benchmark")
    teacher = recipe_runner.teacher_export("finetune_teacher")
    extra = make_synthetic_corpus(
        root / "extra",
        n_train_speakers=2,
        n_dev_speakers=2,
        sessions_per_speaker=1,
        utterances_per_session=2,
        duration=(1.0, 1.5),
        seed=7,
    )
    argv = [
        "--profile",
        "bare",
        "--data_folder",
        recipe_runner.values["data_folder"],
        "--teacher_source",
        teacher,
        "--output_folder",
        str(root / "out"),
        "--results_folder",
        str(root / "results"),
        "--trials",
        "O",
        "--extra_trials",
        extra.folder,
        os.path.join(extra.folder, "trials", "O.txt"),
        "--pairs",
        "ecapa_to_small",
        "--methods",
        "none",
        "trkd",
        "--seeds",
        "3",
        "--epochs",
        "1",
        "--teacher_epochs",
        "1",
        "--batch_size",
        "4",
        "--seg_dur",
        "1.0",
        "--num_workers",
        "0",
        "--decode_workers",
        "1",
        "--device",
        "cpu",
        "--override",
        "sentence_len=1.0",
        "--override",
        "asnorm_top_n=3",
        "--teacher_override",
        "channels=32",
        "--student_override",
        "student_channels=16",
        "--throughput_methods",
        "trkd",
        "--throughput_steps",
        "2",
        "--throughput_warmup",
        "1",
        "--profile_steps",
        "1",
        "--git_revision",
        "test",
        "--archive",
        str(root / "logs.tgz"),
    ]
    # The extra list's stem is O like the base list: it is renamed.
    renamed = os.path.join(extra.folder, "trials", "X.txt")
    os.replace(argv[argv.index("--extra_trials") + 2], renamed)
    argv[argv.index("--extra_trials") + 2] = renamed
    assert run_benchmark.main(argv) == 0
    return root, argv


def test_results_tables(bench_run):
    """results.csv holds teacher and student rows with every column."""
    root, _ = bench_run
    header, rows = read_csv(root / "results" / "results.csv")
    assert header[:6] == ["tag", "pair", "method", "list", "backend", "seeds"]
    for metric in ("eer", "min_dcf_0.01", "min_dcf_0.05", "mean_conf_size"):
        assert {f"{metric}_mean", f"{metric}_std"} <= set(header)
    found = {(r["pair"], r["method"], r["list"], r["backend"]) for r in rows}
    for model in [
        ("teacher", "zero_shot"),
        ("teacher", "fine_tuned"),
        ("ecapa_to_small", "none"),
        ("ecapa_to_small", "trkd"),
    ]:
        for list_name in ("O", "X"):
            for backend in ("cosine", "asnorm"):
                assert (*model, list_name, backend) in found
    for row in rows:
        assert 0.0 <= float(row["eer_mean"]) <= 100.0
        assert 0.0 <= float(row["min_dcf_0.01_mean"]) <= 1.0 + 1e-9
    header, runs = read_csv(root / "results" / "runs.csv")
    assert {"seed", "eer", "train_s", "params_M"} <= set(header)
    assert {r["seed"] for r in runs} == {"3"}
    assert all(float(r["train_s"]) > 0 for r in runs)
    markdown = (root / "results" / "results.md").read_text(encoding="utf-8")
    for text in ("--methods none trkd", "git test", "CPU", "## Throughput"):
        assert text in markdown
    assert "Runs not finished" not in markdown
    if importlib.util.find_spec("matplotlib") is not None:
        assert "![DET curves of the methods](det_methods.png)" in markdown
        png = root / "results" / bench_config.DET_FILE
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_throughput_tables(bench_run):
    """Step and epoch samples/s are positive; the loss share is a fraction;
    the bf16-over-fp32 ratios are written."""
    root, _ = bench_run
    _, rows = read_csv(root / "results" / "throughput.csv")
    assert {(r["method"], r["precision"]) for r in rows} == {
        ("trkd", "fp32"),
        ("trkd", "bf16"),
    }
    for row in rows:
        assert float(row["step_samples_per_s"]) > 0
        assert float(row["epoch_samples_per_s"]) > 0
        assert int(row["epoch_samples"]) > 0
        assert 0 < float(row["kd_loss_share"]) < 1
        assert row["kd_share_clock"] == "cpu"
    _, ratios = read_csv(root / "results" / "speed.csv")
    assert len(ratios) == 1 and ratios[0]["option"] == "bf16 vs fp32"
    assert float(ratios[0]["step_speedup"]) > 0
    assert float(ratios[0]["epoch_speedup"]) > 0


def test_rerun_resumes_without_training(bench_run):
    """The same command again trains nothing and logs a second run."""
    root, argv = bench_run
    result = root / "results" / "runs" / "main__ecapa_to_small__trkd__3.json"
    before = result.stat().st_mtime_ns
    assert run_benchmark.main(argv) == 0
    assert result.stat().st_mtime_ns == before
    with open(root / "out" / bench_config.INVOCATIONS_FILE) as fin:
        assert len(json.load(fin)) == 2
    markdown = (root / "results" / "results.md").read_text(encoding="utf-8")
    runs = [line for line in markdown.splitlines() if line[:1].isdigit()]
    assert sum("`python benchmarks/run_benchmark.py" in r for r in runs) == 2
    assert (root / "logs.tgz").stat().st_size > 0


def test_rerun_with_another_budget_is_refused(bench_run):
    """Finished runs with other settings are never mixed into one table."""
    _, argv = bench_run
    changed = list(argv)
    changed[changed.index("--epochs") + 1] = "2"
    with pytest.raises(ValueError, match="trained with other settings"):
        run_benchmark.main(changed)


@pytest.fixture(scope="module")
def cpu_run(recipe_runner, tmp_path_factory):
    """Runs the CPU profile on the recipe tests' corpus and teacher."""
    root = tmp_path_factory.mktemp("benchmark_cpu")
    teacher = recipe_runner.teacher_export("finetune_teacher")
    argv = [
        "--profile",
        "cpu",
        "--tag",
        "main",
        "--data_folder",
        recipe_runner.values["data_folder"],
        "--teacher_source",
        teacher,
        "--teacher_n_classes",
        "6",
        "--output_folder",
        str(root / "out"),
        "--results_folder",
        str(root / "results"),
        "--trials",
        "O",
        "--pairs",
        "ecapa_to_small",
        "--methods",
        "none",
        "trkd",
        "--seeds",
        "3",
        "4",
        "--epochs",
        "1",
        "--batch_size",
        "4",
        "--seg_dur",
        "1.0",
        "--decode_workers",
        "1",
        "--override",
        "sentence_len=1.0",
        "--override",
        "asnorm_top_n=3",
        "--override",
        "teacher_channels=32",
        "--pair_override",
        "ecapa_to_small",
        "student_channels=16",
        "--throughput_steps",
        "2",
        "--throughput_warmup",
        "1",
        "--profile_steps",
        "1",
        "--git_revision",
        "test",
    ]
    assert run_benchmark.main(argv) == 0
    return root, argv


def test_cpu_profile_runs_from_the_cache(cpu_run):
    """Every student trained from one teacher cache, one file per run with
    its command, the teacher scored as it is, the step ratio reported."""
    root, _ = cpu_run
    cache = root / "out" / "teacher_cache"
    assert (cache / "manifest.json").is_file()
    runs = sorted((root / "results" / "runs").glob("*.json"))
    assert [p.name for p in runs] == [
        f"{tag}__ecapa_to_small__{m}__{s}.json"
        for tag, m in (("main", "trkd"), ("no_kd", "none"))
        for s in (3, 4)
    ]
    for path in runs:
        result = json.loads(path.read_text())
        assert f"--teacher_cache={cache}" in result["argv"]
        assert f"--audio_cache={root / 'out' / 'audio_cache'}" in result["argv"]
        folder = Path(result["output_folder"])
        assert "Exported the model" in (
            folder / "logs" / "train_trkd.log"
        ).read_text(encoding="utf-8")
        assert "--wav_augment=null" in result["argv"]
        assert result["threads"] == 1 and result["git_revision"] == "test"
        assert result["command"].startswith("python recipes/VoxCeleb/TRKD")
        log = (Path(result["output_folder"]) / "train_log.txt").read_text()
        if result["method"] == "trkd":
            assert result["mean_conf_size"] >= 1
            assert "train kd_conf" in log
        else:  # KD settings do not enter a run without KD
            kd_args = [a for a in result["argv"] if a.startswith("--kd_")]
            assert kd_args == ["--kd_method=none"]
            assert "train kd" not in log and "tau" not in log
    _, rows = read_csv(root / "results" / "results.csv")
    teacher = [r for r in rows if r["pair"] == "teacher"]
    assert {r["method"] for r in teacher} == {"as_is"}
    _, ratios = read_csv(root / "results" / "speed.csv")
    assert {r["option"] for r in ratios} == {
        "online bf16 vs online fp32",
        "cached bf16 vs online bf16",
    }
    assert all(float(r["step_speedup"]) > 0 for r in ratios)
    markdown = (root / "results" / "results.md").read_text(encoding="utf-8")
    assert "## Reading (setting 'main')" in markdown
    assert "trkd" in markdown.split("## Reading")[1]


def test_cpu_profile_skips_finished_runs(cpu_run):
    """A run whose result file exists is not trained again; another tag
    with other settings trains apart and is reported beside it."""
    root, argv = cpu_run
    first = root / "results" / "runs" / "main__ecapa_to_small__trkd__3.json"
    before = first.stat().st_mtime_ns
    tagged = list(argv)
    methods = tagged.index("--methods")
    tagged[methods + 1 : methods + 3] = ["trkd"]
    seeds = tagged.index("--seeds")
    tagged[seeds + 1 : seeds + 3] = ["3"]
    tagged += ["--tag", "w0.1", "--student_override", "kd_weight=0.1"]
    assert run_benchmark.main(tagged) == 0
    assert first.stat().st_mtime_ns == before
    assert (
        root / "results" / "runs" / "w0.1__ecapa_to_small__trkd__3.json"
    ).is_file()
    _, rows = read_csv(root / "results" / "results.csv")
    assert {"main", "w0.1"} <= {r["tag"] for r in rows}


def test_report_only_trains_nothing(cpu_run):
    """--report_only rewrites the report from the run files alone."""
    root, argv = cpu_run
    results = root / "results" / "results.md"
    results.unlink()
    runs = sorted((root / "results" / "runs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    invocations = root / "out" / bench_config.INVOCATIONS_FILE
    count = len(json.loads(invocations.read_text()))
    assert run_benchmark.main([*argv, "--report_only"]) == 0
    assert results.is_file() and "as_is" in results.read_text()
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    assert len(json.loads(invocations.read_text())) == count


def test_methods_det_draws_one_seed_per_method(tmp_path, monkeypatch):
    """The DET figure takes each method's run of the first seed, in the
    report's tag (no KD from its own), and names a missing score file."""
    runs_folder = tmp_path / "runs"
    runs_folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    eers = {}
    for tag, method, seed, shift in [
        (bench_config.NO_KD_TAG, "none", 1, 1.0),
        ("t", "trkd", 1, 2.0),
        ("t", "trkd", 2, 0.0),  # another seed: left out
        ("other", "kd", 1, 0.0),  # another tag: left out
        ("t", "dkd", 1, None),  # no score file
    ]:
        folder = tmp_path / f"{tag}_{method}_{seed}"
        if shift is not None:
            labels = torch.arange(200) % 2
            scores = shift * labels + torch.randn(200, generator=gen)
            ids = [f"u{i}" for i in range(200)]
            write_scores(
                folder / "scores" / "O_cosine.txt", ids, ids, labels, scores
            )
            if seed == 1 and tag != "other":
                eers[method] = compute_eer(scores.double(), labels)[0]
        run = {
            "tag": tag,
            "pair": "p",
            "method": method,
            "seed": seed,
            "output_folder": str(folder),
        }
        (runs_folder / f"{tag}_{method}_{seed}.json").write_text(
            json.dumps(run)
        )
    drawn = {}

    def capture(curves, path, title=None):
        drawn.update(curves)
        return path

    monkeypatch.setattr(report, "plot_det", capture)
    config = {
        "runs_folder": str(runs_folder),
        "pairs": ["p"],
        "seeds": [1, 2],
        "methods": ["none", "kd", "dkd", "trkd"],
        "lists": [{"name": "O"}],
        "tag": "t",
        "report_command": "python benchmarks/run_benchmark.py --report_only",
    }
    path, lines = report.methods_det(config, str(tmp_path))
    assert path == str(tmp_path / bench_config.DET_FILE)
    assert list(drawn) == ["none", "trkd"]
    for method, points in drawn.items():
        assert points.eer == pytest.approx(eers[method], abs=1e-6)
    text = "\n".join(lines)
    assert "t_dkd_1/scores/O_cosine.txt" in text
    assert "seed 1" in text and config["report_command"] in text
