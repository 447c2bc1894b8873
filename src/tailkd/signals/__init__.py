"""TAiL's per-annotation signals and how they become a training weight.

- ``self_consistency``: agreement among k answers the (warmed-up) student samples;
- ``ta_student``: the teaching assistant's confidence in the student's own (greedy) output;
- ``ta_teacher``: the teaching assistant's confidence in the teacher's annotation.

One step per module: :mod:`.measure` computes the raw signals (through :mod:`.cache`), :mod:`.weigh`
orients, normalises and combines them into weights and measures each signal against gold.
"""

from tailkd.signals.cache import SignalCache
from tailkd.signals.measure import Decoding, Measured, measure_signals
from tailkd.signals.settings import SIGNALS, USES, VALUES, SignalSettings
from tailkd.signals.weigh import Weighed, auroc_summary, signal_row, weigh, weighted_accuracy

__all__ = ["SIGNALS", "USES", "VALUES", "Decoding", "Measured", "SignalCache", "SignalSettings", "Weighed",
           "auroc_summary", "measure_signals", "signal_row", "weigh", "weighted_accuracy"]
