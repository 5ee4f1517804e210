"""`drsynth import-images` and the package CLI: photo folders become datasets; bad files are skipped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import shared_path
from dataset_fixtures import make_render_dir
from PIL import Image

from drsynth.cli import main
from drsynth.data import open_dataset
from drsynth.errors import DatasetError
from drsynth.import_images import convert_image, import_images
from drsynth.shards import MANIFEST_NAME


def _jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _messy_folder(root: Path) -> dict[str, bytes]:
    """Two classes with every kind of file an image folder holds in practice."""
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "nested").mkdir(parents=True)
    plain = _jpeg(Image.new("RGB", (40, 30), (200, 50, 50)))
    files = {
        "cat/a_plain.jpg": plain,
        "cat/b_big.JPEG": _jpeg(Image.new("RGB", (300, 120), (180, 60, 60))),
        "cat/c_grey.jpg": _jpeg(Image.new("L", (24, 24), 128)),
        "dog/a_alpha.png": b"",
        "dog/b_truncated.jpg": _jpeg(Image.radial_gradient("L").convert("RGB"))[:900],
        "dog/c_garbage.webp": b"RIFF\x00\x00\x00\x00WEBPnot an image at all",
        "dog/nested/d.bmp": b"",
        "dog/readme.txt": b"not an image",
    }
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 0))
    rgba.paste((0, 0, 255, 255), (5, 5, 15, 15))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    files["dog/a_alpha.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (10, 12), (20, 20, 220)).save(buf, format="BMP")
    files["dog/nested/d.bmp"] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    files["cat/d_rotated.jpg"] = _jpeg(Image.new("RGB", (30, 10), (220, 40, 40)), exif=exif.tobytes())
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return files


def test_import_messy_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    files = _messy_folder(root)
    result = import_images(root, tmp_path / "ds", max_side=100, progress=False)
    skipped = {s.path: s.error for s in result.skipped}
    assert set(skipped) == {"dog/b_truncated.jpg", "dog/c_garbage.webp"}
    assert "truncated" in skipped["dog/b_truncated.jpg"]
    assert result.ignored == ("dog/readme.txt",)
    assert result.imported == 6
    m = result.package.manifest
    assert m.classes == ["cat", "dog"] and m.counts == {"cat": 4, "dog": 2} and m.image_size is None
    assert m.source["kind"] == "image-folder" and m.source["max_side"] == 100
    assert {s["path"] for s in m.source["skipped"]} == set(skipped)
    readme = (tmp_path / "ds" / "README.md").read_text()
    assert "2 unreadable file(s) skipped" in readme and "dog/b_truncated.jpg" in readme

    by_path = {
        s["meta"]["source"]["path"]: s for s in open_dataset(result.package.uri, cache_dir=tmp_path / "c")
    }
    assert set(by_path) == set(files) - set(skipped) - {"dog/readme.txt"}
    assert by_path["cat/b_big.JPEG"]["image"].size == (100, 40), "capped at max_side, aspect kept"
    assert by_path["cat/d_rotated.jpg"]["image"].size == (10, 30), "EXIF orientation applied"
    alpha = by_path["dog/a_alpha.png"]["image"]
    assert alpha.getpixel((1, 1))[0] > 240 and alpha.getpixel((10, 10))[2] > 200, "alpha over white"
    assert by_path["cat/c_grey.jpg"]["image"].mode == "RGB"
    plain = by_path["cat/a_plain.jpg"]
    assert plain["meta"]["source"]["reencoded"] is False and plain["meta"]["width"] == 40
    keys = [by_path[p]["__key__"] for p in sorted(by_path)]
    assert all(len(k) == 9 and k.isdigit() for k in keys)


def test_plain_jpeg_bytes_are_kept(tmp_path: Path) -> None:
    data = _jpeg(Image.new("RGB", (16, 16), (1, 2, 3)))
    out, facts = convert_image(data, max_side=None)
    assert out == data and not facts["reencoded"]
    out, facts = convert_image(data, max_side=8)
    assert out != data and facts["reencoded"] and (facts["width"], facts["height"]) == (8, 8)


def test_import_errors(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "bad.jpg").write_bytes(b"nope")
    (root / "dog").mkdir()
    Image.new("RGB", (8, 8)).save(root / "dog" / "ok.png")
    with pytest.raises(DatasetError, match=r"class folder\(s\) \['cat'\] .* hold no readable image"):
        import_images(root, tmp_path / "ds", progress=False, card=False)
    assert not (tmp_path / "ds" / MANIFEST_NAME).exists()
    with pytest.raises(DatasetError, match=r"not found: \['horse'\]"):
        import_images(root, tmp_path / "ds", classes=["dog", "horse"], progress=False)
    result = import_images(root, tmp_path / "ds", classes=["dog"], progress=False, card=False)
    assert result.package.manifest.classes == ["dog"] and result.package.manifest.image_size == 8


def test_import_real_photos_subset(tmp_path: Path) -> None:
    real = shared_path("data", "real")
    result = import_images(
        real, tmp_path / "real", max_per_class=3, max_side=128, shard_size=5, progress=False
    )
    m = result.package.manifest
    assert m.classes == sorted(p.name for p in real.iterdir() if p.is_dir())
    assert all(m.counts[c] + sum(s.path.startswith(c + "/") for s in result.skipped) == 3 for c in m.classes)
    assert "card/contact_sheet.png" in m.card and "card/parameters.png" in m.card
    got = list(open_dataset(result.package.uri, cache_dir=tmp_path / "c", classes=["dog", "cat"]))
    assert len(got) == m.counts["dog"] + m.counts["cat"]
    assert all(max(s["image"].size) <= 128 for s in got)


def test_cli_package_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_render_dir(tmp_path / "render", 6)
    dest = tmp_path / "ds"
    main(["package", "--src", str(src), "--dest", str(dest), "--shard-size", "4", "--no-card"])
    err = capsys.readouterr().err
    assert "committed tiny" in err and "6 images" in err
    assert json.loads((dest / MANIFEST_NAME).read_text())["num_samples"] == 6
    with pytest.raises(SystemExit) as e:
        main(["package", "--src", str(src), "--dest", str(dest)])
    assert e.value.code == 2
    assert "already holds a committed dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["package", "--src", str(tmp_path / "nope"), "--dest", str(tmp_path / "x")])
    assert e.value.code == 2 and "render.json is missing" in capsys.readouterr().err
    main(["dataset", "info", str(dest)])
    assert "0: cat" in capsys.readouterr().out
    main(["dataset", "verify", str(dest), "--cache-dir", str(tmp_path / "c")])
    assert "match their manifest checksums" in capsys.readouterr().err


def test_cli_import_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    _messy_folder(root)
    main(
        [
            "import-images",
            "--src",
            str(root),
            "--dest",
            str(tmp_path / "ds"),
            "--classes",
            "dog,cat",
            "--no-card",
        ]
    )
    err = capsys.readouterr().err
    assert "skipped 2 unreadable file(s)" in err and "dog/b_truncated.jpg" in err
    manifest = json.loads((tmp_path / "ds" / MANIFEST_NAME).read_text())
    assert manifest["classes"] == ["dog", "cat"]
