"""Progress of tailkd's long steps: a bar on a terminal, a log line every tenth with count, rate and ETA
elsewhere, nothing for a step over in a few seconds."""

import logging
from types import SimpleNamespace

import pytest

from tailkd import progress
from tailkd.progress import Progress, batches, track
from tailkd.tasks import Example

from helpers import chain_task, tiny_student

EXAMPLES = [Example(f"e{i}", f"What is {i} + {i + 3}?", str(2 * i + 3), f"{i} + {i + 3} = {2 * i + 3}.")
            for i in range(4)]


@pytest.fixture
def off_terminal(monkeypatch, caplog):
    """stderr is no terminal (a log file, a SLURM job); progress lines captured."""
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="tailkd.progress")
    return caplog


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tailkd.progress"]


def test_off_a_terminal_a_long_loop_logs_count_rate_and_eta_every_tenth(off_terminal, monkeypatch, capsys):
    now = [0.0]
    monkeypatch.setattr(progress, "_clock", lambda: now[0])
    for _ in batches(list(range(100)), 5, "fake step", unit="q"):
        now[0] += 2.0  # 5 questions in 2 s: 2.5 a second
    lines = _lines(off_terminal)
    assert len(lines) == 10
    assert lines[0] == "fake step: 10/100 q (10%), 2.50 q/s, 00:04 elapsed, ETA 00:36"
    assert lines[-1] == "fake step: 100/100 q (100%), 2.50 q/s, 00:40 elapsed, ETA 00:00"
    assert capsys.readouterr().err == ""  # no bar's carriage returns in the log


def test_a_slow_step_gives_its_rate_per_item_and_a_resumed_one_counts_from_where_it_was(off_terminal, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress, "_clock", lambda: now[0])
    with Progress(10, "DPO", unit="step", initial=5) as bar:
        now[0] += 40.0
        bar.reach(6)
    assert _lines(off_terminal) == ["DPO: 6/10 step (60%), 40.00 s/step, 00:40 elapsed, ETA 02:40"]


def test_a_step_over_in_a_few_seconds_says_nothing(off_terminal, capsys):
    assert list(track(range(50), "quick", total=50)) == list(range(50))
    assert _lines(off_terminal) == [] and capsys.readouterr().err == ""


def test_on_a_terminal_a_bar_and_no_log_lines(monkeypatch, caplog, capsys):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    caplog.set_level(logging.INFO, logger="tailkd.progress")
    for _ in batches(list(range(20)), 4, "bar step", unit="q"):
        pass
    err = capsys.readouterr().err
    assert "bar step" in err and "20/20" in err
    assert _lines(caplog) == []


def test_self_consistency_sampling_reports_its_progress(off_terminal, monkeypatch):
    from tailkd.signals.self_consistency import self_consistency

    monkeypatch.setattr(progress, "DELAY_S", 0.0)  # the tiny model is done in well under a second
    self_consistency(tiny_student(), chain_task(), EXAMPLES, k=2, batch_size=2)
    lines = _lines(off_terminal)
    assert [line.split(",")[0] for line in lines] == ["sampling the student (k=2): 2/4 q (50%)",
                                                      "sampling the student (k=2): 4/4 q (100%)"]
    assert all("ETA" in line and ("q/s" in line or "s/q" in line) for line in lines)


def test_training_and_evaluation_report_steps_and_questions_off_a_terminal(off_terminal, monkeypatch):
    import pytorch_lightning as pl

    from tailkd.training import DistillDataModule, DistillModule, Encoder

    from helpers import records

    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    student = tiny_student()
    datamodule = DistillDataModule(records(4), EXAMPLES, Encoder(student.tokenizer, True, 128), 2, 3, seed=0)
    module = DistillModule(student, chain_task(), lr=1e-3)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    lines = [line.split(",")[0] for line in _lines(off_terminal)]
    assert lines == ["training: 1/2 step (50%)", "training: 2/2 step (100%)",
                     "test: greedy outputs: 3/4 q (75%)", "test: greedy outputs: 4/4 q (100%)"]


def test_dpo_steps_go_through_the_progress(off_terminal, monkeypatch):
    from tailkd.teachers.align import progress_callback

    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    callback = progress_callback()
    state = SimpleNamespace(max_steps=4, global_step=0)
    callback.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step = step
        callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    assert [line.split(",")[0] for line in _lines(off_terminal)] == [
        f"DPO: aligning the teacher: {n}/4 step ({25 * n}%)" for n in range(1, 5)]


def test_the_gguf_conversion_counts_its_tensors_through_the_progress(off_terminal, monkeypatch):
    import transformers.modeling_gguf_pytorch_utils as gguf

    from tailkd.models.embedded import gguf_progress

    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    original = gguf.tqdm
    with gguf_progress("converting model.gguf"):
        assert list(gguf.tqdm(list(range(10)), desc="Converting and de-quantizing GGUF tensors...")) == list(range(10))
    assert gguf.tqdm is original
    assert _lines(off_terminal)[-1].startswith("converting model.gguf: 10/10 tensor (100%)")


def test_batches_never_cross_a_group_and_cover_every_item_once():
    items = list(range(23))
    chunks = list(batches(items, 4, "grouped", group=10))
    assert [len(c) for c in chunks] == [4, 4, 2, 4, 4, 2, 3]
    assert [i for c in chunks for i in c] == items
    assert all(len({i // 10 for i in c}) == 1 for c in chunks)
    assert [len(c) for c in batches(items, 4, "plain")] == [4, 4, 4, 4, 4, 3]
