"""Tuning methods: a registry name -> method that decides which parameters train.

The registry is built from the method table in ``config/catalog.py``: a new method is its class (here or in
its own module) plus one row there. Importing this package also registers tuneforge's own PEFT method
(bottleneck adapters), so peft can build and load it.
"""

from tuneforge.config.catalog import METHOD_TABLE, load_impl
from tuneforge.models.tuning.bottleneck import register as _register_bottleneck
from tuneforge.models.tuning.methods import TuningMethod, trainable_summary
from tuneforge.utils.names import Registry

_register_bottleneck()
TUNING: Registry[TuningMethod] = Registry("tuning method")
for _spec in METHOD_TABLE:
    TUNING.register(_spec.name, load_impl(_spec.impl))

__all__ = ["TUNING", "TuningMethod", "trainable_summary"]
