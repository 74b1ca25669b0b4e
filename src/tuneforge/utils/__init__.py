"""Lowest layer: errors, names, paths. Imports nothing else from tuneforge."""
