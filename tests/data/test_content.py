"""The item content file: errors naming file and line, text kept verbatim."""

import json

import pytest

from recbole_pmmrec.data.content import ContentError, read_content_file
from tests.conftest import build_dataset, rewrite_line, write_tiny_dataset


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"line 2: not valid JSON"),
        ('{"text": "no id"}', r"line 2: each line needs a non-empty 'item_id'"),
        ('{"item_id": "i0", "text": "again"}', r"line 2: item_id 'i0' appears twice"),
        ('{"item_id": "i1", "text": 5}', r"line 2: field 'text' of item 'i1' must be a string or null, got int"),
    ],
)
def test_malformed_content_lines(tiny_data, line, message):
    path = rewrite_line(tiny_data, 2, line)
    with pytest.raises(ContentError, match=message):
        read_content_file(path)


def test_missing_content_file(tmp_path, make_config):
    write_tiny_dataset(tmp_path)
    (tmp_path / "tiny" / "tiny.content.jsonl").unlink()
    with pytest.raises(ContentError, match=r"item content file not found: .*tiny\.content\.jsonl"):
        build_dataset(make_config, tmp_path)


def test_text_is_never_split_by_recbole(tmp_path):
    write_tiny_dataset(tmp_path)
    path = tmp_path / "tiny" / "tiny.content.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["text"] = "Café   «naïve»\ttabs and  spaces"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_content_file(path)["i0"][0] == "Café   «naïve»\ttabs and  spaces"
