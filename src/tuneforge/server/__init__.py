"""OpenAI-compatible API (``tuneforge serve``): the wire protocol, the app and its batching scheduler."""
