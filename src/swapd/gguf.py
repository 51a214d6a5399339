"""Reading a GGUF file's metadata: the key/value header, without loading any tensor.

Enough for memory estimates (``swapd.footprint``): the architecture, layer and head counts, the
trained context and the file type. Long arrays (the tokenizer's vocabulary) are skipped, not
kept; short numeric arrays (per-layer head counts of some architectures) are kept as tuples.
A split model (``…-00001-of-00003.gguf``) has its metadata in the first part; :func:`read`
sums the sizes of all parts it finds next to it.

Writing GGUF files is :mod:`swapd.llamacpp.tinygguf`'s job (through the ``gguf`` package, a
test dependency); reading needs only the standard library.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

MAGIC = b"GGUF"
MAX_KEPT_ARRAY = 4096  # longer arrays (vocabularies, merges) are skipped
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)

# value type → struct format of one item (GGUF spec: 8 is a string, 9 an array)
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9

# general.file_type → the name llama.cpp prints (LLAMA_FTYPE_MOSTLY_*)
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}

Value = int | float | bool | str | tuple[int | float | bool | str, ...]


@dataclass(frozen=True, slots=True)
class Gguf:
    """A GGUF file's metadata and size (all parts of a split model)."""

    path: Path
    metadata: Mapping[str, Value]
    size: int  # bytes on disk, every part

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch(self, key: str) -> Value | None:
        """``<architecture>.<key>``, e.g. ``arch("block_count")``."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def file_type(self) -> str:
        """``Q4_K_M``, ``F16``, …; "" when the file does not say."""
        ftype = self.metadata.get("general.file_type")
        return FILE_TYPES.get(ftype, f"type {ftype}") if isinstance(ftype, int) else ""


class _Reader:
    def __init__(self, data: bytes | mmap.mmap, endian: str) -> None:
        self.data = data
        self.pos = 0
        self.endian = endian

    def unpack(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError("truncated GGUF header")
        (value,) = struct.unpack_from(self.endian + fmt, self.data, self.pos)
        self.pos += size
        return value  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(self.unpack("Q"))

    def string(self) -> str:
        n = self.count()
        if self.pos + n > len(self.data):
            raise ValueError("truncated GGUF string")
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.count()
        self.pos += n

    def value(self, vtype: int) -> Value | None:
        """A value of ``vtype``; None for an array too long to keep (skipped)."""
        if vtype == _STRING:
            return self.string()
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype != _ARRAY:
            raise ValueError(f"unknown GGUF value type {vtype}")
        itype, n = int(self.unpack("I")), self.count()
        if n > MAX_KEPT_ARRAY or itype == _ARRAY:
            self.skip_array(itype, n)
            return None
        items: list[int | float | bool | str] = []
        for _ in range(n):
            item = self.value(itype)
            if isinstance(item, tuple) or item is None:
                raise ValueError("nested GGUF array")
            items.append(item)
        return tuple(items)

    def skip_array(self, itype: int, n: int) -> None:
        if itype in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[itype]) * n
        elif itype == _STRING:
            for _ in range(n):
                self.skip_string()
        elif itype == _ARRAY:
            for _ in range(n):
                self.skip_array(int(self.unpack("I")), self.count())
        else:
            raise ValueError(f"unknown GGUF value type {itype}")
        if self.pos > len(self.data):
            raise ValueError("truncated GGUF array")


def parse(data: bytes | mmap.mmap) -> dict[str, Value]:
    """The metadata of a GGUF file whose bytes (at least the header) are ``data``."""
    if bytes(data[:4]) != MAGIC:
        raise ValueError("not a GGUF file (bad magic)")
    endian = "<"
    (version,) = struct.unpack_from("<I", data, 4)
    if version > 0xFFFF:  # a big-endian file reads as a huge little-endian version
        endian = ">"
        (version,) = struct.unpack_from(">I", data, 4)
    if version not in (2, 3):  # version 1 (32-bit counts, 2023) is long gone
        raise ValueError(f"unsupported GGUF version {version}")
    reader = _Reader(data, endian)
    reader.pos = 8
    reader.count()  # tensors
    n_kv = reader.count()
    out: dict[str, Value] = {}
    for _ in range(n_kv):
        key = reader.string()
        value = reader.value(int(reader.unpack("I")))
        if value is not None:
            out[key] = value
    return out


def parts(path: Path) -> list[Path]:
    """The files of the model at ``path``: every part of a split model, else just it."""
    m = _SPLIT.match(path.name)
    if m is None:
        return [path]
    total = int(m.group("total"))
    found = [
        path.with_name(f"{m.group('base')}-{i:05d}-of-{total:05d}.gguf")
        for i in range(1, total + 1)
    ]
    return [p for p in found if p.exists()] or [path]


def read(path: str | os.PathLike[str]) -> Gguf:
    """The metadata of the GGUF file at ``path``; OSError / ValueError when it is unreadable or
    not a GGUF file. Cached while the file's size and modification time stay the same: a big
    vocabulary takes a tenth of a second to skip, and placement asks again at every start."""
    path = Path(path)
    stat = path.stat()
    return _read(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int, size: int) -> Gguf:
    if size < 24:
        raise ValueError("not a GGUF file (too short)")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        metadata = parse(data)
    total = sum(p.stat().st_size for p in parts(path)) if _SPLIT.match(path.name) else size
    return Gguf(path, MappingProxyType(metadata), total)  # shared by the cache: read-only
