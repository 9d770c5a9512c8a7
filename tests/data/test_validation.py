"""Bad input when a PMMRec dataset loads: each case an error naming file, line or item and
what was expected, or a documented fallback that is counted."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from recbole_pmmrec.data.atomic import AtomicFileError
from recbole_pmmrec.data.content import ContentError, read_content_file
from recbole_pmmrec.data.images import decode_images
from tests.conftest import build_dataset, rewrite_line, write_tiny_dataset


def _content_rows(folder):
    return [json.loads(line) for line in (folder / "tiny" / "tiny.content.jsonl").read_text().splitlines()]


def _write_rows(folder, rows):
    (folder / "tiny" / "tiny.content.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_items_without_content_and_content_for_unknown_items_are_counted(tiny_data, make_config, caplog):
    caplog.set_level(logging.INFO)
    rows = [r for r in _content_rows(tiny_data) if r["item_id"] not in ("i3", "i8")]
    _write_rows(tiny_data, rows + [{"item_id": "ghost", "text": "never rated"}])
    _, dataset = build_dataset(make_config, tiny_data)
    assert "2 items of tiny.inter have no line (no content), e.g. ['i3', 'i8']" in caplog.text
    assert "1 lines name items not in the filtered dataset (ignored)" in caplog.text
    assert dataset.item_content.text_mask[dataset.token2id("item_id", "i3")].sum() == 0


def test_empty_and_whitespace_texts_are_masked_and_counted(tiny_data, make_config, caplog):
    caplog.set_level(logging.INFO)
    rows = _content_rows(tiny_data)
    rows[0]["text"], rows[1]["text"] = "", "   \t "
    _write_rows(tiny_data, rows)
    _, dataset = build_dataset(make_config, tiny_data)
    assert "2 of 30 items have no text, or only whitespace (text masked)" in caplog.text


def test_a_content_file_that_is_not_utf8_names_the_line(tiny_data):
    path = tiny_data / "tiny" / "tiny.content.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = '{"item_id": "i2", "text": "Caf\xe9"}\n'.encode("latin-1")
    path.write_bytes(b"".join(lines))
    with pytest.raises(ContentError, match=r"tiny\.content\.jsonl, line 3: not valid UTF-8"):
        read_content_file(path)


def test_garbled_texts_are_counted(tiny_data, make_config, caplog):
    rows = _content_rows(tiny_data)
    rows[4]["text"] = "CafÃ© au Lait"  # UTF-8 read as latin-1 upstream
    _write_rows(tiny_data, rows)
    build_dataset(make_config, tiny_data)
    assert "1 texts look garbled" in caplog.text and "'i4'" in caplog.text


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), "image file not found"),
    (lambda p: p.write_bytes(b""), r"image file is empty \(0 bytes\)"),
    (lambda p: p.write_bytes(p.read_bytes()[:40]), "image file cannot be read"),  # truncated
    (lambda p: p.write_text("just text"), "image file cannot be read"),
])
def test_bad_image_files_name_item_line_and_file_or_are_masked(tiny_data, make_config, damage, message, caplog):
    damage(tiny_data / "tiny" / "images" / "i4.png")
    with pytest.raises(ContentError, match=rf"tiny\.content\.jsonl, line 5 \(item i4\): {message}"):
        build_dataset(make_config, tiny_data)
    _, dataset = build_dataset(make_config, tiny_data, bad_images="mask")
    assert dataset.item_content.has_image[dataset.token2id("item_id", "i4")] == 0
    assert dataset.item_content.has_image[dataset.token2id("item_id", "i5")] == 1
    assert "1 images could not be read and are masked (bad_images: mask)" in caplog.text


def test_a_huge_image_is_refused(tiny_data, make_config, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # the tiny images are 20 x 20
    with pytest.raises(ContentError, match=r"line \d+ \(item i\d+\): image file is huge \(Image size \(400 pixels\) exceeds limit of 300"):
        build_dataset(make_config, tiny_data)


@pytest.mark.parametrize("mode, expected", [
    ("L", (90, 90, 90)),
    ("LA", (255, 255, 255)),  # transparent: white
    ("RGBA", (255, 255, 255)),
    ("CMYK", (0, 255, 255)),  # pure cyan
    ("P", (200, 30, 30)),
    ("P-transparent", (255, 255, 255)),
    ("I;16", (90, 90, 90)),  # 16-bit greyscale scaled to 8 bits
])
def test_image_modes_are_converted_to_rgb(tmp_path, mode, expected):
    path = tmp_path / "image.png"
    if mode == "L":
        Image.new("L", (12, 12), 90).save(path)
    elif mode == "LA":
        Image.new("LA", (12, 12), (90, 0)).save(path)
    elif mode == "RGBA":
        Image.new("RGBA", (12, 12), (10, 20, 30, 0)).save(path)
    elif mode == "CMYK":
        path = tmp_path / "image.jpg"
        Image.new("CMYK", (12, 12), (255, 0, 0, 0)).save(path, quality=100)
    elif mode == "P":
        image = Image.new("P", (12, 12), 0)
        image.putpalette([200, 30, 30] + [0] * 765)
        image.save(path)
    elif mode == "P-transparent":
        image = Image.new("P", (12, 12), 0)
        image.putpalette([200, 30, 30] + [0] * 765)
        image.save(path, transparency=0)
    else:
        Image.fromarray(np.full((12, 12), 90 * 257, dtype=np.uint16)).save(path)
    pixels, has_image, problems = decode_images([(path, "line 1")], 8)
    assert has_image.tolist() == [1.0] and not problems
    assert pixels[0, :, 4, 4].tolist() == pytest.approx(list(expected), abs=3), pixels[0, :, 4, 4]


def test_duplicate_item_lines_are_an_error(tiny_data):
    path = rewrite_line(tiny_data, 2, '{"item_id": "i0", "text": "again"}')
    with pytest.raises(ContentError, match="line 2: item_id 'i0' appears twice"):
        read_content_file(path)


@pytest.mark.parametrize("header, line, message", [
    ("user_id:token\titem_id:tokn\ttimestamp:float", None, r"tiny\.inter, line 1: field 'item_id' has type 'tokn'"),
    ("user_id:token\titem_id\ttimestamp:float", None, r"line 1: header field 2 'item_id' is not name:type"),
    ("user_id:token\titem_id:token\ttime:float", None, r"line 1: load_col names \['timestamp'\]"),
    (None, "u0\ti1\tyesterday", r"tiny\.inter, line 3: field 'timestamp:float' value 'yesterday' is not a number"),
])
def test_malformed_atomic_files_name_file_line_and_field(tiny_data, make_config, header, line, message):
    path = tiny_data / "tiny" / "tiny.inter"
    lines = path.read_text().splitlines()
    if header:
        lines[0] = header
    if line:
        lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises((AtomicFileError, ContentError), match=message):
        build_dataset(make_config, tiny_data)


@pytest.mark.parametrize("setting, value, message", [
    ("text_encoder", "/no/such/bert", r"text_encoder '/no/such/bert' is neither a local folder nor in the local"),
    ("image_encoder", "no-such-clip", r"image_encoder 'no-such-clip': not an open_clip model name"),
    ("image_encoder", "timm:no_such_net", r"image_encoder 'timm:no_such_net': timm has no model 'no_such_net'"),
])
def test_an_encoder_that_does_not_exist_is_named(tiny_data, make_config, monkeypatch, setting, value, message):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without a hub
    with pytest.raises(ValueError, match=message):
        build_dataset(make_config, tiny_data, **{setting: value})
