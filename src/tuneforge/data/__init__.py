"""Data layer: read files in any supported format into canonical examples, check, split, tokenize."""
