"""Modelfiles and ``hearth create``: a model defined as a base plus a system prompt, a chat
template, default parameters, messages, LoRA adapters and licenses."""

from hearth.errors import ModelfileError
from hearth.modelfile.parse import Recipe, parse_modelfile

__all__ = ["ModelfileError", "Recipe", "parse_modelfile"]
