"""A built-in word-level text encoder: fixed embeddings for a closed vocabulary, no download needed.

For the procedural demo datasets, whose captions use a few dozen words, a frozen random embedding per word
plus a sin-cos position code carries every word of a caption; the model's trainable caption projection learns
the rest. With `context = K > 0` each token also carries its K neighbours on either side, each through a
random table of its own per offset (a frozen n-gram encoder): a token then knows its phrase, as a contextual
encoder such as T5 would, so "a red circle at the left and a blue square at the right" binds colour, shape and
position without the diffusion model having to (docs/decisions.md#contextual-word-encoder). Saved as a
folder with `config.json` (`model_type: "ptdit-words"`) and `embeddings.safetensors`, and loaded by
`ptdit.encoders.load_text_encoder` like any other text encoder.

Shape legend: B prompts, S tokens (max_length), C width.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

MODEL_TYPE = "ptdit-words"
WORD = re.compile(r"[^\W_]+")  # a word: letters and digits of any script (ASCII captions split as [a-z0-9]+)
SKIPPED = re.compile(r"[\s!-/:-@\[-`{-~]+")  # whitespace and ASCII punctuation separate words silently
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def _sincos(positions: int, dim: int) -> torch.Tensor:
    omega = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def _check_context(context: int) -> int:
    if not isinstance(context, int) or isinstance(context, bool) or context < 0:
        raise ValueError(f"context must be a non-negative int (neighbours on either side), got {context!r}")
    return context


def _context_tables(context: int, vocab_size: int, dim: int, seed: int) -> torch.Tensor:
    """(2K, V, C) random tables, one per neighbour offset, from a stream apart from the word embeddings' (so the
    word embeddings of a seed are the same with and without context); row 0 (padding) is zero."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    tables = torch.randn(2 * context, vocab_size, dim, generator=gen)
    tables[:, 0] = 0
    return tables


def _shift(ids_BS: torch.Tensor, offset: int) -> torch.Tensor:
    """Token ids of the neighbour at `offset` (id 0, padding, past either end): out[:, i] = ids[:, i + offset]."""
    shifted = torch.zeros_like(ids_BS)
    if offset > 0:
        shifted[:, :-offset] = ids_BS[:, offset:]
    else:
        shifted[:, -offset:] = ids_BS[:, :offset]
    return shifted


class WordTextEncoder:
    """Word-level encoder: lower-cased words -> fixed embeddings + position code, EOS, padding mask.

    Attributes:
        kind: "words".
        vocab: the known words (unknown words map to `<unk>`, with a warning).
        max_length: tokens S per prompt (words + EOS, then padding).
        context: neighbours K on either side whose words each token also carries (0: the word alone).
    """

    kind = "words"

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        dim: int = 64,
        max_length: int = 32,
        seed: int = 0,
        context: int = 0,
        embeddings: torch.Tensor | None = None,
        context_embeddings: torch.Tensor | None = None,
    ) -> None:
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even number >= 2, got {dim}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (one word and EOS), got {max_length}")
        self.vocab = tuple(dict.fromkeys(w.lower() for w in vocab))
        self.tokens = {w: i for i, w in enumerate((*SPECIAL_TOKENS, *self.vocab))}
        self.max_length = max_length
        self.seed = seed
        if embeddings is None:
            gen = torch.Generator().manual_seed(seed)
            embeddings = torch.randn(len(self.tokens), dim, generator=gen)
            embeddings[0] = 0  # padding
        if embeddings.shape != (len(self.tokens), dim):
            raise ValueError(f"embeddings must be ({len(self.tokens)}, {dim}), got {tuple(embeddings.shape)}")
        self.embeddings = embeddings.float()
        self.positions = _sincos(max_length, dim)
        self.context = _check_context(context)
        if context_embeddings is None:
            context_embeddings = _context_tables(context, len(self.tokens), dim, seed)
        if context_embeddings.shape != (2 * context, len(self.tokens), dim):
            raise ValueError(
                f"context_embeddings must be ({2 * context}, {len(self.tokens)}, {dim}) for context={context}, "
                f"got {tuple(context_embeddings.shape)}"
            )
        self.context_embeddings = context_embeddings.float()

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> WordTextEncoder:
        self.embeddings = self.embeddings.to(device)
        self.positions = self.positions.to(device)
        self.context_embeddings = self.context_embeddings.to(device)
        return self

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) token ids and (B, S) mask (1 = word or EOS). Over-long prompts are truncated with a warning."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not a single string")
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        unknown, dropped, truncated = set(), set(), 0
        for b, prompt in enumerate(prompts):
            words = WORD.findall(prompt.lower())
            unknown.update(w for w in words if w not in self.tokens)
            dropped.update(SKIPPED.sub("", WORD.sub("", prompt)))
            if len(words) > self.max_length - 1:
                truncated += 1
                words = words[: self.max_length - 1]
            row = [self.tokens.get(w, self.tokens["<unk>"]) for w in words] + [self.tokens["</s>"]]
            ids[b, : len(row)] = torch.tensor(row)
        if unknown:
            warnings.warn(f"words not in the vocabulary (encoded as <unk>): {sorted(unknown)[:10]}", stacklevel=3)
        if dropped:
            warnings.warn(
                f"the word encoder reads only letters and digits; ignored these characters: {''.join(sorted(dropped))}",
                stacklevel=3,
            )
        if truncated:
            warnings.warn(
                f"{truncated} prompt(s) exceed max_length={self.max_length} tokens and were truncated", stacklevel=3
            )
        return ids, (ids != 0).long()

    def encode(self, prompts: Sequence[str], *, negative: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (B, S, C) float32 features (zero at padding) and the (B, S) long mask.

        `negative` is accepted for interface parity with `TextEncoder.encode`; words are lower-cased either way.
        """
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        emb = self.embeddings[ids] + self.positions[None] * mask[..., None]
        for table, offset in zip(self.context_embeddings, self.offsets(), strict=True):
            emb = emb + table[_shift(ids, offset)]  # padding (id 0) and positions past either end add zero
        return emb * mask[..., None], mask

    def offsets(self) -> list[int]:
        """The neighbour offsets, in the order of `context_embeddings`: -K .. -1, then 1 .. K."""
        return [*range(-self.context, 0), *range(1, self.context + 1)]

    __call__ = encode

    def save(self, folder: str | os.PathLike[str]) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "model_type": MODEL_TYPE,
            "vocab": list(self.vocab),
            "dim": self.dim,
            "max_length": self.max_length,
            "seed": self.seed,
            "context": self.context,
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tensors = {"embeddings": self.embeddings.cpu().contiguous()}
        if self.context:
            tensors["context_embeddings"] = self.context_embeddings.cpu().contiguous()
        save_file(tensors, str(folder / "embeddings.safetensors"))
        return folder


def is_word_encoder_folder(path: str | os.PathLike[str]) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == MODEL_TYPE
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def load_word_encoder(
    folder: str | os.PathLike[str], *, max_length: int | None = None, device: torch.device | str = "cpu"
) -> WordTextEncoder:
    """Loads a saved `WordTextEncoder`; `max_length` may only shorten nothing: positions are recomputed."""
    from ptdit.io import load_safetensors, read_json

    folder = Path(folder)
    config = read_json(folder / "config.json", what="word encoder config")
    tensors = load_safetensors(folder / "embeddings.safetensors")
    context = config.get("context", 0)  # folders written before the option carry no context
    if context and "context_embeddings" not in tensors:
        raise ValueError(
            f"{folder}: config.json says context={context} but embeddings.safetensors has no "
            "context_embeddings; rewrite the folder with WordTextEncoder.save"
        )
    encoder = WordTextEncoder(
        config["vocab"],
        dim=config["dim"],
        max_length=max_length or config["max_length"],
        seed=config["seed"],
        context=context,
        embeddings=tensors["embeddings"],
        context_embeddings=tensors.get("context_embeddings"),
    )
    return encoder.to(device)
