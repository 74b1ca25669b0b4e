"""Command line (typer + rich). Top layer: may import everything below."""
