"""Every inference step outside Lightning (sampling, selection, greedy outputs, TA scoring) runs on the
device the run trains on. Lightning hands the model back on the CPU after fit and test, so on a GPU
machine they ran on the CPU until the recipe placed the models itself. The GPU case runs only where
CUDA is available (never in CI); the CPU case guards the same contract everywhere."""

from __future__ import annotations

import importlib

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tailkd.config import config_dir

ACCELERATORS = ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _spy(monkeypatch, seen):
    measure = importlib.import_module("tailkd.signals.measure")
    from tailkd.signals.ta import LanguageModelTA

    def device(model):
        return next(model.parameters()).device.type

    sample, greedy, score = measure.sample_texts, measure.generate_texts, LanguageModelTA.score
    monkeypatch.setattr(measure, "sample_texts", lambda student, *a, **k: seen.append(
        ("samples", device(student.model))) or sample(student, *a, **k))
    monkeypatch.setattr(measure, "generate_texts", lambda student, *a, **k: seen.append(
        ("greedy", device(student.model))) or greedy(student, *a, **k))
    monkeypatch.setattr(LanguageModelTA, "score", lambda self, items, **k: seen.append(
        ("ta", device(self.model.model))) or score(self, items, **k))


@pytest.mark.parametrize("accelerator", ACCELERATORS)
@pytest.mark.parametrize("signals", ["all", "select"])
def test_every_inference_step_runs_on_the_training_device(accelerator, signals, tmp_path, monkeypatch):
    monkeypatch.setenv("TAILKD_CACHE_DIR", str(tmp_path / "cache"))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "method=tail", f"signals={signals}", "logger=csv",
                                          f"trainer.pl.accelerator={accelerator}", "signals.cache=false"])
    seen: list[tuple[str, str]] = []
    _spy(monkeypatch, seen)
    results = instantiate(cfg.method).run(cfg, tmp_path)
    expected = "cuda" if accelerator == "gpu" else "cpu"
    kinds = {kind for kind, _ in seen}
    # the greedy outputs ta_student judges are decoded in the sampling pass, beside the samples
    assert kinds == ({"samples", "ta"} if signals == "all" else {"samples"})
    assert {device for _, device in seen} == {expected}
    assert results["device"].startswith(expected)


def test_select_with_ta_student_decodes_every_output_in_the_candidates_sampling_pass(tmp_path, monkeypatch):
    """select samples its candidates with their greedy outputs beside the samples; ta_student then
    judges the bought ones' outputs from that pass, not from a greedy pass of their own."""
    monkeypatch.setenv("TAILKD_CACHE_DIR", str(tmp_path / "cache"))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "method=tail_no_warmup", "signals=select", "logger=csv",
                                          "signals.ta_student.enabled=true", "signals.cache=false"])
    seen: list[tuple[str, str]] = []
    _spy(monkeypatch, seen)
    instantiate(cfg.method).run(cfg, tmp_path)
    assert [kind for kind, _ in seen] == ["samples", "ta"]
