"""The sha256 of a file's bytes, read in blocks: what artifact shards, problem source files and tokenizer files
are recorded by; and the cheap fingerprint of a local model directory that artifact keys record."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Small files that say what a model directory is: hashed. The rest (weights) only by name and size, so keying a
# multi-GB checkpoint costs a directory walk, not a read of its weights.
MODEL_DESCRIPTORS = ("config.json", "tokenizer_config.json", "generation_config.json")


def model_dir_fingerprint(path: str | os.PathLike) -> str | None:
    """What artifact keys record of a local model directory beside its path: every file's relative name and size,
    and the sha256 of its config files and weight indexes (`*.index.json`). Weights replaced in place by a file of
    another size, or a changed config or index, change it; a `touch` does not. None when `path` is not a local
    directory (a Hub id or an engine's model name: keyed by the name alone)."""
    root = os.path.abspath(path)
    if not os.path.isdir(root):
        return None
    digest = hashlib.sha256()
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            stat = os.stat(full)
            rel = os.path.relpath(full, root)
            digest.update(f"{rel}\0{stat.st_size}\0".encode())
            if name in MODEL_DESCRIPTORS or name.endswith(".index.json"):
                digest.update(file_digest(full).encode())
    return digest.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """`sha256_file`, once per version of a file in a process: keys are computed for each stage and variant, and a
    fully cached run must not re-read every source file each time. The stat fields key the cache: an edit re-hashes."""
    stat = os.stat(path)
    return _cached_sha256(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)
