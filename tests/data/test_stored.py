"""Stored datasets (ptdit.data.files / sources / export): export round trips, random access, bad data."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ptdit.data import MovingShapesDataset, ShapesDataset, TurntableDataset
from ptdit.data.export import encode_frames, export_dataset
from ptdit.data.registry import build_named_dataset
from ptdit.data.sources import _scan_headers, scan_tar, scan_tar_reference, sniff, split_member, tar_index

NAMES = {"wds": "webdataset", "parquet": "parquet", "folder": "image-folder"}


def _export(tmp_path: Path, fmt: str, name: str = "shapes", num: int = 12, **kw) -> Path:
    out = tmp_path / f"{name}-{fmt}"
    export_dataset(name, num, out, fmt=fmt, size=kw.pop("size", 24), shard_size=5, show_progress=False, **kw)
    return out


@pytest.mark.parametrize("fmt", ["wds", "parquet", "folder"])
def test_export_round_trip_is_exact_for_images(tmp_path, fmt):
    out = _export(tmp_path, fmt)
    dataset = build_named_dataset(NAMES[fmt], path=str(out), size=24, seed=0, options={})
    reference = ShapesDataset(size=24, seed=0, num_samples=12)
    assert len(dataset) == 12
    for i in (0, 7, 11):
        item, ref = dataset[i], reference[i]
        assert item["caption"] == ref["caption"] and item["skipped"] == 0
        assert torch.equal(item["pixels"], ref["pixels"])


@pytest.mark.parametrize("fmt", ["wds", "parquet", "folder"])
@pytest.mark.parametrize(("name", "cls", "option"), [("moving-shapes", MovingShapesDataset, "frames"),
                                                    ("turntable", TurntableDataset, "views")])  # fmt: skip
def test_export_round_trip_for_clips_and_views(tmp_path, fmt, name, cls, option):
    out = _export(tmp_path, fmt, name, num=6, options={option: 4})
    dataset_name = "video-folder" if fmt == "folder" else NAMES[fmt]
    dataset = build_named_dataset(dataset_name, path=str(out), size=24, seed=0, options={"frames": 4})
    reference = cls(size=24, seed=0, num_samples=6, **{option: 4})
    for i in (0, 5):
        item, ref = dataset[i], reference[i]
        assert item["pixels"].shape == (3, 4, 24, 24) and item["caption"] == ref["caption"]
        # uint8 storage: at most half a grey level from the float render (turntable shading is continuous)
        assert (item["pixels"] - ref["pixels"]).abs().max() <= 1 / 127.5 + 1e-6


def test_identical_frames_stay_separate_frames_in_apng():
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    ext, data = encode_frames(frames)
    from PIL import Image

    assert ext == "apng" and sniff(data) == "apng"
    with Image.open(io.BytesIO(data)) as image:
        assert image.n_frames == 3


def test_export_refuses_a_non_empty_folder_and_writes_a_manifest(tmp_path):
    out = _export(tmp_path, "wds")
    assert json.loads((out / "ptdit-export.json").read_text())["num"] == 12
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_dataset("shapes", 3, out, fmt="wds", show_progress=False)
    with pytest.raises(ValueError, match="--format"):
        export_dataset("shapes", 3, tmp_path / "new", fmt="zip", show_progress=False)
    assert not (tmp_path / "new").exists()


def test_tar_index_reads_members_and_is_cached(tmp_path):
    out = _export(tmp_path, "wds")
    shard = sorted(out.glob("*.tar"))[0]
    index = scan_tar(shard)
    assert [k for k, _ in index] == [f"{i:08d}" for i in range(5)]
    assert set(index[0][1]) == {"png", "txt"}
    cache = shard.parent / (shard.name + ".index.json")
    assert tar_index(shard) == index and cache.is_file()
    stamped = json.loads(cache.read_text())
    stamped["samples"] = stamped["samples"][:2]  # a cache with the shard's stamp is trusted, a stale one rebuilt
    cache.write_text(json.dumps(stamped))
    assert len(tar_index(shard)) == 2
    stamped["stamp"][0] += 1
    cache.write_text(json.dumps(stamped))
    assert tar_index(shard) == index
    assert split_member("a/b/000001.seg.png") == ("a/b/000001", "seg.png")


def test_a_glob_and_a_list_of_shards_select_files(tmp_path):
    out = _export(tmp_path, "wds")
    shards = sorted(str(p) for p in out.glob("*.tar"))
    by_glob = build_named_dataset("webdataset", path=str(out / "shard-00000[01].tar"), size=24, seed=0, options={})
    by_list = build_named_dataset("webdataset", path=shards[:2], size=24, seed=0, options={})
    assert len(by_glob) == len(by_list) == 10
    with pytest.raises(FileNotFoundError, match=r"data\.path"):
        build_named_dataset("webdataset", path=str(tmp_path / "missing"), size=24, seed=0, options={})
    with pytest.raises(ValueError, match=r"needs data\.path"):
        build_named_dataset("parquet", path=None, size=24, seed=0, options={})


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _png(side: int) -> bytes:
    return encode_frames(np.full((1, side, side, 3), 200, dtype=np.uint8))[1]


def test_each_kind_of_bad_sample_is_skipped_counted_and_replaced_by_the_next(tmp_path):
    members = {
        "0.png": _png(24), "0.txt": b"good zero",
        "1.png": b"not a png at all", "1.txt": b"corrupt image",
        "2.png": _png(24),  # no caption
        "3.png": _png(24), "3.json": json.dumps({"other": 1}).encode(),  # json without a caption
        "4.png": _png(8), "4.txt": b"too small",
        "5.txt": b"no image",
        "6.png": _png(24), "6.json": json.dumps({"caption": "good six"}).encode(),
    }  # fmt: skip
    _write_tar(tmp_path / "bad.tar", members)
    dataset = build_named_dataset("webdataset", path=str(tmp_path), size=24, seed=0, options={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = dataset[1]
    assert item["caption"] == "good six" and item["skipped"] == 5 and item["index"] == 1
    messages = [str(w.message) for w in caught]  # the first 3 are named, the last of them says the rest are not
    assert len(messages) == 3 and "bad.tar:1" in messages[0] and "not named" in messages[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [dataset[i]["skipped"] for i in range(7)] == [0, 5, 4, 3, 2, 1, 0]
    upscaled = build_named_dataset("webdataset", path=str(tmp_path), size=24, seed=0, options={"allow_upscale": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert upscaled[4]["caption"] == "too small" and upscaled[4]["skipped"] == 0


def test_a_truncated_shard_keeps_the_samples_before_the_damage(tmp_path):
    _write_tar(
        tmp_path / "t.tar", {f"{i}.{e}": (_png(24) if e == "png" else b"c") for i in range(4) for e in ("png", "txt")}
    )
    data = (tmp_path / "t.tar").read_bytes()
    (tmp_path / "t.tar").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = build_named_dataset("webdataset", path=str(tmp_path), size=24, seed=0, options={})
        assert 0 < len(dataset) < 4
        assert all(dataset[i]["pixels"].shape == (3, 1, 24, 24) for i in range(len(dataset)))


def test_parquet_columns_are_configurable_and_undecodable_rows_skipped(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"jpg": [b"junk", _png(24)], "text": ["bad", "good"]})
    pq.write_table(table, tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="image_column"):
        build_named_dataset("parquet", path=str(tmp_path), size=24, seed=0, options={})
    dataset = build_named_dataset(
        "parquet", path=str(tmp_path), size=24, seed=0, options={"image_column": "jpg", "caption_column": "text"}
    )
    with pytest.warns(UserWarning, match="row-0"):
        item = dataset[0]
    assert item["caption"] == "good" and item["skipped"] == 1


def test_all_bad_data_is_one_clear_error(tmp_path):
    _write_tar(tmp_path / "b.tar", {f"{i}.png": b"x" for i in range(3)})
    dataset = build_named_dataset("webdataset", path=str(tmp_path), size=24, seed=0, options={})
    with warnings.catch_warnings(), pytest.raises(ValueError, match="consecutive bad samples"):
        warnings.simplefilter("ignore")
        dataset[0]


def test_unknown_options_are_named_and_builtin_ones_ignored_with_a_warning(tmp_path):
    out = _export(tmp_path, "wds")
    with pytest.raises(ValueError, match=r"unknown data.options \['colour'\]"):
        build_named_dataset("webdataset", path=str(out), size=24, seed=0, options={"colour": 1})
    with pytest.warns(UserWarning, match="max_objects"):
        build_named_dataset("webdataset", path=str(out), size=24, seed=0, options={"max_objects": 1})
    with pytest.raises(ValueError, match="takes none"):
        build_named_dataset("shapes", path=str(out), size=24, seed=0, options={})


@pytest.mark.parametrize("fmt", ["wds", "parquet"])
def test_worker_processes_read_the_same_samples_as_the_parent_after_it_opened_the_files(tmp_path, fmt):
    dataset = build_named_dataset(NAMES[fmt], path=str(_export(tmp_path, fmt)), size=24, seed=0, options={})
    serial = [dataset[i]["pixels"] for i in range(len(dataset))]  # the parent now holds open files
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
    assert torch.equal(torch.cat([b["pixels"] for b in loader]), torch.stack(serial))


def _tar_variants(folder: Path) -> list[Path]:
    """Shards as webdataset (pax, float mtime), POSIX ustar (long names in the prefix field), GNU (long names in
    'L' records) and pax (long names) write them, with a folder and a link among the members."""
    import webdataset as wds

    paths = [folder / "wds.tar"]
    with wds.TarWriter(str(paths[0])) as writer:
        for i in range(3):
            writer.write({"__key__": f"{i:04d}", "png": _png(24), "txt": f"caption {i}"})
    long = "d" * 60 + "/" + "e" * 60 + "/sample"
    for name, fmt in (("ustar", tarfile.USTAR_FORMAT), ("gnu", tarfile.GNU_FORMAT), ("pax", tarfile.PAX_FORMAT)):
        paths.append(folder / f"{name}.tar")
        with tarfile.open(paths[-1], "w", format=fmt) as tar:
            folder_info = tarfile.TarInfo("somefolder")
            folder_info.type = tarfile.DIRTYPE
            tar.addfile(folder_info)
            for i, data in enumerate([b"x" * 700, b"", _png(24)]):
                info = tarfile.TarInfo(f"{long}{i}.{'' if i == 1 else 'seg.'}png" if fmt != tarfile.USTAR_FORMAT
                                       else f"{'d' * 60}/{'e' * 60}/s{i}.png")  # fmt: skip
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("alink")
            link.type, link.linkname = tarfile.SYMTYPE, "somefolder"
            tar.addfile(link)
    return paths


def test_fast_header_scan_agrees_with_tarfile(tmp_path):
    for path in _tar_variants(tmp_path):
        reference = scan_tar_reference(path)
        assert reference and _scan_headers(path) == reference, path.name
    out = _export(tmp_path, "wds")
    shard = sorted(out.glob("*.tar"))[0]
    assert _scan_headers(shard) == scan_tar_reference(shard)
    data = shard.read_bytes()  # damaged: the fast scan hands over to tarfile, which keeps what precedes it
    shard.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert scan_tar(shard) == scan_tar_reference(shard)
