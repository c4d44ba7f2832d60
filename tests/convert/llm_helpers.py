"""Tiny random causal LM folders, as Hugging Face saves them, with tokenizers trained here.

Two tokenizer families, the two llama.cpp has tokenizers for:

- byte-level BPE with the Llama 3 or the Qwen 2 pre-tokenizer split (``byte_level_tokenizer``);
- SentencePiece-style BPE with byte fallback (``sentencepiece_tokenizer``): ``<unk> <s> </s>``,
  the 256 byte tokens ``<0x00>``..``<0xFF>``, then the merged pieces, spaces written as ``▁``,
  laid out like Llama 2's and Gemma's ``tokenizer.json``.

Weights are random but not tiny (std 0.15, norms around 1), so that the logits differ clearly
from position to position and a wrong conversion cannot hide in the noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.convert.tokenizer import LLAMA3_SPLIT, QWEN2_SPLIT

CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "a quick brown fox jumps over the lazy dog, twice!",
    "Hello world. Hello there, general Kenobi.",
    "It's 2024: numbers like 12345 and 3.14 matter; don't they?",
    "models convert from safetensors into gguf files for llama.cpp",
    "Héllo café — naïve façade, 日本語 text too",
] * 8
SAMPLE_TEXTS = [
    "the cat sat on the mat",
    "Hello world, it's 12345!",
    "gguf files: llama.cpp café",
    " two  spaces and\nnew lines",
]
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"


@dataclass(frozen=True)
class TokenizerSpec:
    kind: str  # "llama3", "qwen2" (byte-level) or "sentencepiece"
    bos: str | None
    eos: str
    unk: str | None = None
    add_bos: bool = True
    prepend_space: bool = True  # sentencepiece: Llama 2 puts "▁" before the text, Gemma not
    extra_specials: tuple[str, ...] = ()


LLAMA3_TOKENIZER = TokenizerSpec("llama3", bos="<|begin_of_text|>", eos="<|end_of_text|>")
QWEN_TOKENIZER = TokenizerSpec("qwen2", bos=None, eos="<|endoftext|>", add_bos=False)
LLAMA2_TOKENIZER = TokenizerSpec("sentencepiece", bos="<s>", eos="</s>", unk="<unk>")
GEMMA_TOKENIZER = TokenizerSpec(
    "sentencepiece", bos="<s>", eos="</s>", unk="<unk>", prepend_space=False
)
PHI3_TOKENIZER = TokenizerSpec(
    "sentencepiece",
    bos="<s>",
    eos="</s>",
    unk="<unk>",
    extra_specials=("<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>"),
)


def build_tokenizer(spec: TokenizerSpec) -> Any:
    """A transformers fast tokenizer trained on CORPUS."""
    from transformers import PreTrainedTokenizerFast

    if spec.kind == "sentencepiece":
        backend = _sentencepiece_backend(spec)
    else:
        backend = _byte_level_backend(spec)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=spec.bos, eos_token=spec.eos, unk_token=spec.unk
    )
    if spec.extra_specials:
        tokenizer.add_special_tokens({"additional_special_tokens": list(spec.extra_specials)})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _byte_level_backend(spec: TokenizerSpec) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    split = LLAMA3_SPLIT if spec.kind == "llama3" else QWEN2_SPLIT
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    specials = [t for t in (spec.bos, spec.eos) if t]
    tokenizer.add_special_tokens(specials)
    _add_bos(tokenizer, spec)
    return tokenizer


def _sentencepiece_backend(spec: TokenizerSpec) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    space = "\u2581"
    # Train on words (Metaspace split), then rebuild as Llama 2 lays it out: specials, bytes,
    # pieces; a normalizer instead of a pre-tokenizer, byte fallback for anything unknown.
    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=space)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=[], show_progress=False)
    trainer_tokenizer.train_from_iterator(CORPUS, trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]
    specials = [spec.unk or "<unk>", spec.bos or "<s>", spec.eos]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [t for t in sorted(trained["vocab"], key=trained["vocab"].get) if t not in pieces]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    model = models.BPE(
        vocab={piece: index for index, piece in enumerate(pieces)},
        merges=merges,
        unk_token=specials[0],
        byte_fallback=True,
        fuse_unk=True,
    )
    tokenizer = Tokenizer(model)
    steps = [normalizers.Replace(" ", space)]
    if spec.prepend_space:
        steps.insert(0, normalizers.Prepend(space))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(space, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.add_special_tokens(specials)
    _add_bos(tokenizer, spec)
    return tokenizer


def _add_bos(tokenizer: Any, spec: TokenizerSpec) -> None:
    from tokenizers import processors

    if spec.add_bos and spec.bos:
        bos_id = tokenizer.token_to_id(spec.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A $B", special_tokens=[(spec.bos, bos_id)]
        )


def write_tiny_llm(
    root: Path, config: Any, tokenizer: Any, *, seed: int = 0, norm_offset: float = 1.0
) -> Path:
    """Save a random model for ``config`` and ``tokenizer`` as a safetensors folder.

    ``norm_offset`` is what a norm weight is centred on: 1 for most models, 0 for Gemma,
    whose RMSNorm multiplies by 1 + weight.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.15)
            elif "norm" in name:
                param.copy_(norm_offset + 0.2 * torch.randn_like(param))
            else:  # biases
                param.normal_(0.0, 0.1)
    model.eval()
    model.save_pretrained(root, safe_serialization=True)
    tokenizer.save_pretrained(root)
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny test model\n")
    return root


def token_count(tokenizer: Any, multiple: int = 64) -> int:
    """The tokenizer's size rounded up, as real checkpoints pad their embedding."""
    return -(-len(tokenizer) // multiple) * multiple


def reference_logits(root: Path, ids: list[int]) -> Any:
    """transformers' float32 logits for ``ids`` (all positions), as numpy."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([ids]))
    return out.logits[0].numpy()
