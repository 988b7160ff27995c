"""Random access into stored samples: WebDataset tar shards, Parquet files and plain folders.

A source is a list of samples; `fields(i)` returns sample i's stored fields by extension (`{"png": bytes,
"txt": bytes}`, the WebDataset convention) and `name(i)` a readable name for messages. Nothing here decodes
pixels (`ptdit.data.decode` does), so a source can be indexed without reading images.

- `TarShards`: each shard is scanned once with the standard library's `tarfile` (member name, data offset,
  size; headers only), the index is cached as `<shard>.index.json` beside the shard when that folder is
  writable (else in memory), and a sample is one seek + read per field (docs/data.md#library-choices).
- `ParquetRows`: row i is found through the files' row-group metadata (pyarrow); the row group is read once
  and kept (the last few per process), so neighbouring rows cost one read.
- `FolderFiles`: the `image-folder` / `video-folder` layouts (class subfolders, or same-named `.txt` captions).
"""

from __future__ import annotations

import bisect
import glob
import json
import os
import tarfile
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptdit.data.decode import CLIP_EXTENSIONS, IMAGE_EXTENSIONS
from ptdit.io import atomic_file
from ptdit.optional import require

MEDIA_EXTENSIONS = (*IMAGE_EXTENSIONS, *CLIP_EXTENSIONS)
INDEX_SUFFIX = ".index.json"


def resolve_paths(path: str | Sequence[str] | None, suffix: str, kind: str) -> list[Path]:
    """`data.path` -> sorted files: a folder (its `*{suffix}` files), a glob pattern, a file, or a list of those."""
    if path is None:
        raise ValueError(f"the {kind} dataset needs data.path (a folder, a glob pattern or a list of {suffix} files)")
    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    found: list[Path] = []
    for item in items:
        text = os.path.expanduser(str(item))
        if any(c in text for c in "*?["):
            found += sorted(Path(p) for p in glob.glob(text) if p.endswith(suffix))
        elif Path(text).is_dir():
            found += sorted(Path(text).glob(f"*{suffix}"))
        elif Path(text).is_file():
            found.append(Path(text))
        else:
            raise FileNotFoundError(f"data.path {text} not found (give a folder, a glob pattern or {suffix} files)")
    if not found:
        raise ValueError(f"no {suffix} files at data.path {path}; point it at {kind} shards (ptdit data export)")
    return found


def split_member(name: str) -> tuple[str, str]:
    """WebDataset naming: `dir/000123.seg.png` -> key `dir/000123`, extension `seg.png`."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def scan_tar_reference(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """(key, {extension: (data offset, size)}) per sample, in file order, with the standard library's `tarfile`.
    A damaged shard keeps the samples before the damage (with a warning naming it)."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile():
                    key, ext = split_member(member.name)
                    samples.setdefault(key, {})[ext] = (member.offset_data, member.size)
    except (tarfile.TarError, OSError) as err:
        warnings.warn(f"tar shard {path} is damaged ({err}); using the {len(samples)} samples before it", stacklevel=2)
    return list(samples.items())


class _UseTarfile(Exception):
    """The fast header scan met something it leaves to `tarfile` (damage, sparse or base-256 members)."""


_FILE_TYPES = (b"0", b"\0", b"7")  # regular, old-style regular, contiguous (what tarfile's isfile() accepts)
_SKIPPED_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6", b"K", b"g")  # links, devices, folders, long link names


def _pax_fields(data: bytes) -> dict[bytes, bytes]:
    """The records (`LEN key=value`, newline-terminated) of a POSIX (pax) extended header."""
    fields, pos = {}, 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        length = int(data[pos : data.index(b" ", pos)])
        key, _, value = data[data.index(b" ", pos) + 1 : pos + length - 1].partition(b"=")
        fields[key], pos = value, pos + length
    return fields


def _scan_headers(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """`scan_tar_reference`'s result from the 512-byte headers read directly (ustar, pax and GNU long names:
    what webdataset, Python and GNU tar write), about 3x faster than tarfile; raises _UseTarfile otherwise."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    total, offset, pending = path.stat().st_size, 0, {}
    with open(path, "rb") as f:
        while True:
            f.seek(offset)
            header = f.read(512)
            if len(header) < 512 or header == bytes(512):
                if len(header) < 512 and offset < total:
                    raise _UseTarfile
                break
            stored = header[148:156].split(b"\0")[0].strip()
            if not stored or int(stored, 8) != sum(header[:148]) + 256 + sum(header[156:]) or header[124] & 0x80:
                raise _UseTarfile
            kind, size = header[156:157], int(header[124:136].split(b"\0")[0].strip() or b"0", 8)
            data_offset, offset = offset + 512, offset + 512 + (size + 511) // 512 * 512
            if size and data_offset + size > total:
                raise _UseTarfile  # truncated: the reference keeps what precedes the damage
            if kind in (b"x", b"L"):
                f.seek(data_offset)
                data = f.read(size)
                if kind == b"L":
                    pending[b"path"] = data.split(b"\0")[0]
                else:
                    pending.update(_pax_fields(data))
                continue
            name = header[0:100].split(b"\0")[0]
            if kind in _FILE_TYPES and not (kind == b"\0" and name.endswith(b"/")):  # old-style folders end in /
                posix = header[257:263] == b"ustar\0"  # GNU headers use the prefix field for other data
                prefix = header[345:500].split(b"\0")[0] if posix else b""
                name = pending.get(b"path", prefix + b"/" + name if prefix else name)
                size = int(pending.get(b"size", size))
                key, ext = split_member(name.decode("utf-8", errors="surrogateescape"))
                samples.setdefault(key, {})[ext] = (data_offset, size)
                offset = data_offset + (size + 511) // 512 * 512
            elif kind not in _SKIPPED_TYPES and kind != b"\0":
                raise _UseTarfile
            pending = {}
    return list(samples.items())


def scan_tar(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """(key, {extension: (data offset, size)}) per sample, in file order, from the tar headers only: the fast
    header scan, or `tarfile` (the reference; tests check that they agree) for damaged or unusual shards."""
    try:
        return _scan_headers(path)
    except (_UseTarfile, ValueError, OSError):
        return scan_tar_reference(path)


def tar_index(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """`scan_tar`, cached beside the shard as `<shard>.index.json` (checked against the shard's size and mtime)."""
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    cache = path.with_name(path.name + INDEX_SUFFIX)
    if cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("stamp") == stamp:
                return [(k, {e: tuple(v) for e, v in f.items()}) for k, f in data["samples"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # a stale or damaged cache is rebuilt
    samples = scan_tar(path)
    if os.access(path.parent, os.W_OK):
        try:
            with atomic_file(cache) as tmp:
                tmp.write_text(json.dumps({"stamp": stamp, "samples": samples}, separators=(",", ":")))
        except OSError:
            pass  # a read-only or full disk keeps the index in memory only
    return samples


class TarShards:
    """Samples of WebDataset tar shards, by random access (see the module docstring)."""

    def __init__(self, shards: list[Path]) -> None:
        self.shards = shards
        self.samples: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        for number, shard in enumerate(shards):
            self.samples += [(number, key, fields) for key, fields in tar_index(shard)]
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict[str, Any]:  # open files stay in their process (DataLoader workers reopen)
        return {**self.__dict__, "_handles": {}}

    def name(self, index: int) -> str:
        number, key, _ = self.samples[index]
        return f"{self.shards[number].name}:{key}"

    def fields(self, index: int) -> dict[str, bytes]:
        number, _, where = self.samples[index]
        if self._pid != os.getpid():  # a forked DataLoader worker must not share the parent's file offsets
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(number)
        if handle is None:
            handle = self._handles[number] = open(self.shards[number], "rb")  # noqa: SIM115 (kept open)
        out = {}
        for ext, (offset, size) in where.items():
            handle.seek(offset)
            out[ext] = handle.read(size)
        return out


def sniff(data: bytes) -> str:
    """The extension of media bytes from their signature (Parquet cells carry no file name)."""
    if data.startswith(b"\x89PNG"):
        idat = data.find(b"IDAT")
        return "apng" if 0 <= data.find(b"acTL") < (idat if idat >= 0 else len(data)) else "png"
    if data.startswith(b"GIF8"):
        return "gif"
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    return "mp4"  # PyAV detects the container itself


class ParquetRows:
    """Rows of Parquet files: a media column (bytes, or a `{"bytes": ...}` struct as Hugging Face datasets store
    images) and a caption column."""

    def __init__(self, files: list[Path], *, image_column: str = "image", caption_column: str = "caption") -> None:
        pq = require("pyarrow.parquet", "data", purpose="reading Parquet datasets")
        self.files, self.columns = files, (image_column, caption_column)
        self.groups: list[tuple[int, int]] = []  # (file, row group) per global row group
        self.starts: list[int] = []  # first global row of each row group
        total = 0
        for number, path in enumerate(files):
            try:
                meta = pq.ParquetFile(path).metadata
            except Exception as err:  # pyarrow raises ArrowInvalid / OSError for damaged files
                raise ValueError(f"cannot read Parquet file {path} ({err}); remove or replace it") from None
            names = set(meta.schema.names)
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise ValueError(
                    f"Parquet file {path} has no column(s) {missing} (it has {sorted(names)}); "
                    "set data.options.image_column / caption_column"
                )
            for group in range(meta.num_row_groups):
                self.groups.append((number, group))
                self.starts.append(total)
                total += meta.row_group(group).num_rows
        self.length = total
        self._cache: OrderedDict[int, Any] = OrderedDict()  # row group -> table, the last few read
        self._readers: dict[int, Any] = {}  # open files, per process
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict(), "_readers": {}}

    def _locate(self, index: int) -> tuple[int, int]:
        group = bisect.bisect_right(self.starts, index) - 1
        return group, index - self.starts[group]

    def name(self, index: int) -> str:
        group, row = self._locate(index)
        number, rg = self.groups[group]
        return f"{self.files[number].name}:row-group-{rg}:row-{row}"

    def _rows(self, group: int) -> Any:
        if self._pid != os.getpid():  # a forked DataLoader worker must not share the parent's open files
            self._cache, self._readers, self._pid = OrderedDict(), {}, os.getpid()
        if group not in self._cache:
            pq = require("pyarrow.parquet", "data", purpose="reading Parquet datasets")
            number, rg = self.groups[group]
            if number not in self._readers:
                self._readers[number] = pq.ParquetFile(self.files[number])
            self._cache[group] = self._readers[number].read_row_group(rg, columns=list(self.columns))
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        self._cache.move_to_end(group)
        return self._cache[group]

    def fields(self, index: int) -> dict[str, bytes]:
        group, row = self._locate(index)
        rows = self._rows(group)
        media, caption = (rows.column(c)[row].as_py() for c in self.columns)  # only this row becomes Python
        if isinstance(media, dict):
            media = media.get("bytes")
        out: dict[str, bytes] = {}
        if isinstance(media, (bytes, bytearray)) and media:
            out[sniff(bytes(media))] = bytes(media)
        if isinstance(caption, str):
            out["txt"] = caption.encode("utf-8")
        return out


class FolderFiles:
    """The folder layouts: class subfolders (`root/<class>/*.jpg`; caption = class name) or flat files with
    same-named `.txt` captions."""

    def __init__(self, root: Path, extensions: tuple[str, ...]) -> None:
        def files(folder: Path) -> list[Path]:
            return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in extensions)

        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.classes:
            self.items = [(f, i) for i, c in enumerate(self.classes) for f in files(root / c)]
        else:
            self.items = [(f, -1) for f in files(root)]
        if not self.items:
            raise ValueError(f"no files ({', '.join(extensions)}) under {root}")

    def __len__(self) -> int:
        return len(self.items)

    def name(self, index: int) -> str:
        return str(self.items[index][0])

    def fields(self, index: int) -> dict[str, bytes]:
        path, label = self.items[index]
        out: dict[str, bytes] = {}
        try:
            out[path.suffix.lower().lstrip(".")] = path.read_bytes()
        except OSError:
            return out
        if label >= 0:
            out.update(txt=self.classes[label].encode("utf-8"), cls=str(label).encode())
        elif path.with_suffix(".txt").is_file():
            out["txt"] = path.with_suffix(".txt").read_bytes()
        return out


__all__ = ["FolderFiles", "ParquetRows", "TarShards", "resolve_paths", "scan_tar", "sniff", "split_member"]
