"""OpenAI Responses API: /v1/responses (see docs/SERVER.md)."""
