"""OpenAI-compatible serving: request/response protocol, errors and (next) the app and its scheduler."""
