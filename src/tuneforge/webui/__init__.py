"""The browser UI (gradio) over the CLI: Train, Evaluate, Chat and Export tabs."""
