"""Models layer: find, prepare (GGUF -> safetensors) and load models and tokenizers; tiny test models."""
