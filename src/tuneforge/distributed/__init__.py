"""Training in several processes on one machine or several: launch, strategies, and rank helpers."""
