"""Anthropic Messages API: /v1/messages (see docs/SERVER.md)."""
