"""tailkd's console: its own log lines and progress, without the third-party messages a user cannot act
on. Each is silenced where it is raised, by the logger of the library that says it or a warning filter
scoped to the module that warns (never by a global filter, so that any other warning still shows);
W&B's, which is neither, is avoided where tailkd builds its logger (``training/trainer.py``).

Every CLI calls :func:`quiet` first thing in the function it runs, so Hydra's parallel and SLURM jobs
(other processes, which run that function and nothing before it) get it too.
"""

from __future__ import annotations

import logging
import os
import warnings

from tailkd.progress import on_terminal

# Lightning advertises its cloud logger at every Trainer start, through its rank-zero info logger,
# which also says useful things (the device used): only that one message is dropped
LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"
LITLOGGER_TIP = "try installing [litlogger]"

# torch deprecated LeafSpec, which Lightning's _pytree still builds: Lightning's to fix, not the user's
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAFSPEC_MODULE = r"pytorch_lightning\.utilities\._pytree"

# TRL's DPO (ARTE) still reads an attribute transformers deprecated: TRL's to fix
GRADIENT_CHECKPOINTING = r"`is_gradient_checkpointing` is deprecated"
GRADIENT_CHECKPOINTING_MODULE = r"transformers\.modeling_utils"

# matplotlib, which Lightning imports through torchmetrics, says once per machine that it builds its
# font cache (a warning, when that takes over 5 s); its errors still show
MATPLOTLIB_FONTS = "matplotlib.font_manager"


class DropMessage(logging.Filter):
    """Drops the records whose message contains ``needle``."""

    def __init__(self, needle: str):
        super().__init__()
        self.needle = needle

    def filter(self, record: logging.LogRecord) -> bool:
        return self.needle not in record.getMessage()


def quiet() -> None:
    """Silences the messages above at their sources (idempotent)."""
    lightning = logging.getLogger(LIGHTNING_INFO)
    if not any(isinstance(f, DropMessage) and f.needle == LITLOGGER_TIP for f in lightning.filters):
        lightning.addFilter(DropMessage(LITLOGGER_TIP))
    warnings.filterwarnings("ignore", message=LEAFSPEC, category=FutureWarning, module=LEAFSPEC_MODULE)
    warnings.filterwarnings("ignore", message=GRADIENT_CHECKPOINTING, category=FutureWarning,
                            module=GRADIENT_CHECKPOINTING_MODULE)
    logging.getLogger(MATPLOTLIB_FONTS).setLevel(logging.ERROR)
    if not on_terminal():
        # off a terminal the bars of transformers (loading, saving a model) and datasets (TRL preparing
        # DPO's pairs), a second or two each, are carriage-return noise in a log; tailkd's own long steps
        # log their progress instead (tailkd.progress)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def drop_anonymous(init: dict) -> None:
    """Lightning's WandbLogger passes ``anonymous=None`` to ``wandb.init`` whatever it is given, and W&B
    (0.19 on) prints that the setting has no effect; left out, W&B's default is the same."""
    if init.get("anonymous", "unset") is None:
        del init["anonymous"]
