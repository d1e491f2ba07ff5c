"""Packaging for speechbrain-trkd, a SpeechBrain plugin for triage KD."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# Tested together with torch 2.11.0 (speechbrain_trkd/onnx_export.py).
DEPLOY = ["onnx==1.23.2", "onnxruntime==1.32.0"]
# Tested with torch and torchaudio 2.11.0; a range, so that the plugin
# installs into an existing SpeechBrain environment.
TORCH = ["torch>=2.6,<3", "torchaudio>=2.6,<3"]

setup(
    name="speechbrain-trkd",
    version="0.1.0",
    description=(
        "Triage knowledge distillation (TRKD) and KD baselines for "
        "SpeechBrain speaker-verification models"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["speechbrain_trkd", "speechbrain_trkd.*"]),
    install_requires=[
        *TORCH,
        "speechbrain>=1.1.2,<1.2",
        "hyperpyyaml>=1.2.2",
        "ruamel.yaml>=0.17.28,<0.19",
        # The benchmark's report (benchmarks/paired_reading.py).
        "pandas",
        "scipy",
        "soundfile",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "ruff==0.17.6",
            "codespell",
            "hypothesis",
            "yamllint",
            "matplotlib",
            *DEPLOY,
        ],
        # ONNX export (export_student.py --onnx) and ONNX Runtime inference.
        "deploy": DEPLOY,
        "plots": ["matplotlib"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
