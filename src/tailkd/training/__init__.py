"""Training: the weighted loss, the LightningModule and DataModule, the Trainer."""

from tailkd.training.data import DistillDataModule, Encoder
from tailkd.training.module import DistillModule
from tailkd.training.records import TrainRecord

__all__ = ["DistillDataModule", "DistillModule", "Encoder", "TrainRecord"]
