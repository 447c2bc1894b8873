"""Training: the weighted loss, the LightningModule and DataModule, the Trainer."""

from tailkd.training.data import DistillDataModule, Encoder, TrainRecord
from tailkd.training.module import DistillModule

__all__ = ["DistillDataModule", "DistillModule", "Encoder", "TrainRecord"]
