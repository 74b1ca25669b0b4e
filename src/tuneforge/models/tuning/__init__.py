"""Tuning methods: a registry name -> method that decides which parameters train."""

from tuneforge.models.tuning.methods import TUNING, TuningMethod, trainable_summary

__all__ = ["TUNING", "TuningMethod", "trainable_summary"]
