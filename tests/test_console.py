"""A clean console: third-party messages a user cannot act on are silenced where they are raised, and
nothing else is (the smoke run's whole console is checked in test_cli.py)."""

import logging
import warnings

import pytest

from tailkd import console


@pytest.fixture
def quieted(monkeypatch, caplog):
    """console.quiet() applied, and undone after the test (loggers are process-wide)."""
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    lightning, fonts = logging.getLogger(console.LIGHTNING_INFO), logging.getLogger(console.MATPLOTLIB_FONTS)
    filters, level = list(lightning.filters), fonts.level
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings():
        console.quiet()
        console.quiet()  # twice, as a process running two CLIs' functions would: one filter
        yield caplog
    lightning.filters[:] = filters
    fonts.setLevel(level)


def test_lightning_keeps_its_device_lines_without_the_litlogger_tip(quieted):
    lightning = logging.getLogger(console.LIGHTNING_INFO)
    lightning.info("GPU available: False, used: False")
    lightning.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
                   "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger")
    assert [r.getMessage() for r in quieted.records] == ["GPU available: False, used: False"]
    assert sum(isinstance(f, console.DropMessage) for f in lightning.filters) == 1


def test_the_leafspec_deprecation_is_ignored_from_lightning_only(quieted):
    message = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet()  # its filter goes before "always"
        warnings.warn_explicit(message, FutureWarning, "_pytree.py", 21, module="pytorch_lightning.utilities._pytree")
        warnings.warn_explicit(message, FutureWarning, "mine.py", 1, module="mypackage.trees")
        warnings.warn_explicit("another deprecation", FutureWarning, "_pytree.py", 22,
                               module="pytorch_lightning.utilities._pytree")
    assert [(w.filename, str(w.message)) for w in caught] == [("mine.py", message), ("_pytree.py", "another deprecation")]


def test_matplotlibs_font_cache_notice_is_dropped_and_its_errors_kept(quieted):
    fonts = logging.getLogger(console.MATPLOTLIB_FONTS)
    fonts.warning("Matplotlib is building the font cache; this may take a moment.")
    fonts.error("a font file could not be read")
    assert [r.getMessage() for r in quieted.records] == ["a font file could not be read"]


def test_wandbs_anonymous_argument_is_left_out_only_when_unset():
    init = {"project": "tailkd", "anonymous": None}
    console.drop_anonymous(init)
    assert init == {"project": "tailkd"}
    chosen = {"anonymous": "allow"}
    console.drop_anonymous(chosen)
    assert chosen == {"anonymous": "allow"}
