"""Defects found on real publisher files, each reproduced on a small fixture: converted
datasets that load with the README's command, the 2014 Amazon layout, HTML fragments, the
older image key, encodings, id-only and headerless item files, quoted fields, messages,
truncated files, per-filter counts and images from a map file."""

import gzip
import json

import pytest
import yaml
from PIL import Image

from dataset_converters import ConversionError, convert
from dataset_converters.cli import main as convert_main
from tests.dataset_converters.test_converters import read_content, read_inter, review18, write_lines


def test_a_converted_dataset_runs_with_the_readme_command(tmp_path, tiny_bert, capsys):
    from recbole_pmmrec.quick_start import main as run_main

    raw = tmp_path / "raw"
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{(u + t) % 12},4.0,{1000 * u + t}" for u in range(20) for t in range(8)]
    write_lines(raw / "ratings.csv", lines)
    write_lines(raw / "movies.csv", ["movieId,title,genres"]
                + [f"{i},Movie number {i} ({1990 + i}),Drama|Comedy" for i in range(12)])
    out = tmp_path / "data" / "films"
    assert convert_main(["movielens", "--input", str(raw), "--output", str(out), "--no-progress"]) == 0
    settings = yaml.safe_load((out / "films.yaml").read_text(encoding="utf-8"))
    assert settings["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}  # the .inter has a rating too
    assert settings["item_modalities"] == ["text"]
    assert json.loads((out / "films.summary.json").read_text())["files"]["settings"] == "films.yaml"
    # the README's command, with no hand-written YAML (the tiny text encoder keeps it fast)
    assert run_main(["--model=PMMRec", "--dataset=films", f"--data_path={tmp_path / 'data'}",
                     f"--text_encoder={tiny_bert}", "--epochs=1", "--hidden_size=32", "--inner_size=64",
                     f"--checkpoint_dir={tmp_path / 'saved'}", "--state=WARNING"]) == 0
    assert "test result: {'recall@10'" in capsys.readouterr().out


def test_the_k_core_is_recorded_in_the_dataset_settings(tmp_path):
    raw = tmp_path / "raw"
    write_lines(raw / "clicks.csv", ["user,item,time"] + [f"u{u},i{(u + t) % 4},{t}" for u in range(6) for t in range(4)])
    out = tmp_path / "shop"
    convert("generic", raw / "clicks.csv", out, user_col="user", item_col="item", time_col="time", k_core=3,
            progress=False)
    settings = yaml.safe_load((out / "shop.yaml").read_text(encoding="utf-8"))
    assert settings["user_inter_num_interval"] == "[3,inf)" and settings["item_inter_num_interval"] == "[3,inf)"


@pytest.mark.parametrize("value", ["[text]", "['text']", "text", "[text,image]", "text,image", "\"['text','image']\""])
def test_list_values_on_the_command_line(value):
    from recbole_pmmrec.config import Config

    config = Config("PMMRec", "ml-100k-text", argv=[f"--item_modalities={value}"])
    assert config["item_modalities"] == (["text", "image"] if "image" in value else ["text"])


def test_every_list_valued_key_reads_a_list_from_the_command_line():
    from recbole_pmmrec.config import Config

    config = Config("PMMRec", "ml-100k-text", argv=["--metrics=Recall,NDCG", "--topk=[5,20]"])
    assert config["metrics"] == ["Recall", "NDCG"] and config["topk"] == [5, 20]


def test_amazon_2014_metadata_is_found_beside_the_5_core_reviews(tmp_path):
    raw = tmp_path / "raw14"
    write_lines(raw / "reviews_Digital_Music_5.json", [review18("A1", "B1", 5.0, 10), review18("A1", "B2", 4.0, 20)])
    write_lines(raw / "meta_Digital_Music.json", [str({"asin": "B1", "title": "Song one"}),
                                                  str({"asin": "B2", "title": "Song two"})])
    summary = convert("amazon2018", raw / "reviews_Digital_Music_5.json", tmp_path / "music", progress=False)
    assert summary["inputs"]["meta"].endswith("meta_Digital_Music.json")
    assert read_content(tmp_path / "music")["B1"]["text"] == "Song one"
    with pytest.raises(ConversionError, match="is a metadata file: give the reviews file as --input"):
        convert("amazon2018", raw / "meta_Digital_Music.json", tmp_path / "x", progress=False)


def test_html_fragments_are_stripped_and_plain_angle_brackets_kept(tmp_path):
    raw = tmp_path / "raw"
    write_lines(raw / "Toys.json", [review18("A1", f"B{i}", 5.0, 10 + i) for i in range(4)])
    write_lines(raw / "meta_Toys.json", [
        json.dumps({"asin": "B0", "title": '<span class="a-size-medium a-color-secondary"', "brand": "Acme"}),
        json.dumps({"asin": "B1", "title": "<1/3> Godzilla vs Mothra"}),
        json.dumps({"asin": "B2", "title": "Smash < Boxer 3>"}),
        json.dumps({"asin": "B3", "title": 'Robot <span class="x">Deluxe</span>'}),
    ])
    summary = convert("amazon2018", raw / "Toys.json", tmp_path / "toys", progress=False)
    content = read_content(tmp_path / "toys")
    assert content["B0"]["text"] == "Acme"  # the cut-off tag is dropped, the rest kept
    assert content["B1"]["text"] == "<1/3> Godzilla vs Mothra"
    assert content["B2"]["text"] == "Smash < Boxer 3>"
    assert content["B3"]["text"] == "Robot Deluxe"
    assert summary["text"]["markup_only_fields_dropped"] == 1


def test_the_older_2018_image_key(tmp_path):
    raw = tmp_path / "raw"
    write_lines(raw / "Tools.json", [review18("A1", "B1", 5.0, 10)])
    write_lines(raw / "meta_Tools.json", [json.dumps({"asin": "B1", "title": "Saw", "image": ["https://i.example/s.jpg"]})])
    summary = convert("amazon2018", raw / "Tools.json", tmp_path / "tools", progress=False)
    assert summary["images"]["urls"] == 1
    assert (tmp_path / "tools" / "tools.image_urls.tsv").read_text().splitlines()[1] == "B1\thttps://i.example/s.jpg"


def test_a_utf8_movies_dat_is_read_as_utf8_and_latin1_stays_latin1(tmp_path, caplog):
    for encoding in ("utf-8", "latin-1"):
        raw = tmp_path / encoding
        write_lines(raw / "ratings.dat", ["1::1::5::100", "1::2::4::200"])
        write_lines(raw / "movies.dat", ["1::Café au Lait (1993)::Comedy", "2::Heat (1995)::Action"], encoding=encoding)
        summary = convert("movielens", raw, tmp_path / f"out-{encoding}", progress=False)
        assert read_content(tmp_path / f"out-{encoding}")["1"]["text"].startswith("Café au Lait (1993)")
        assert summary["encodings"][str(raw / "movies.dat")] == encoding
    # a wrong --encoding override gives mojibake, and a warning says so
    convert("movielens", tmp_path / "utf-8", tmp_path / "forced", encoding="cp1252", progress=False)
    assert "may not be cp1252" in caplog.text and "latin-1" not in caplog.text
    with pytest.raises(ConversionError, match="unknown encoding 'latin-9000'"):
        convert("movielens", tmp_path / "utf-8", tmp_path / "bad", encoding="latin-9000", progress=False)


def test_a_movies_dat_holding_replacement_characters_is_warned_about(tmp_path, caplog):
    raw = tmp_path / "raw"
    write_lines(raw / "ratings.dat", ["1::1::5::100"])
    write_lines(raw / "movies.dat", ["1::Caf\ufffd au Lait (1993)::Comedy"])  # as some copies ship it
    convert("movielens", raw, tmp_path / "o", progress=False)
    assert read_content(tmp_path / "o")["1"]["text"].startswith("Caf\ufffd au Lait")
    assert "movies.dat, line 1: the text looks garbled" in caplog.text and "may not be utf-8" in caplog.text
    caplog.clear()
    convert("movielens", raw, tmp_path / "o2", encoding="latin-1", progress=False)
    assert read_content(tmp_path / "o2")["1"]["text"].startswith("Caf\u00ef\u00bf\u00bd au Lait")
    assert "movies.dat, line 1: the text looks garbled" in caplog.text and "may not be latin-1" in caplog.text


def test_id_only_item_files_and_the_real_cause_of_an_empty_result(tmp_path):
    raw = tmp_path / "morec"
    write_lines(raw / "amazon_2w_users.tsv", ["u1\ti1 i2 i3", "u2\ti2 i3"])
    items = write_lines(raw / "amazon_2w_items.tsv", ["i1", "i2", "i3"])  # MoRec's id-only list
    summary = convert("pmmrec", raw, tmp_path / "morec_out", items=items, progress=False)
    assert summary["interactions"] == 5 and summary["items_with_text"] == 0 and not summary["skipped"]
    write_lines(items, ["x1", "x2"])  # no interaction's item is listed: the message says so, not the k-core
    with pytest.raises(ConversionError, match=r"left after filtering: 5 rows read; dropped: 5 of items not in the "
                                              r"item file$"):
        convert("pmmrec", raw, tmp_path / "morec_out2", items=items, progress=False)


def test_headerless_item_files_and_csv_quoted_fields(tmp_path):
    raw = tmp_path / "microlens"
    write_lines(raw / "pairs.tsv", ["user\titem\ttime", "u1\t1\t5", "u1\t2\t6", "u2\t1\t7"])
    write_lines(raw / "titles.csv", ['1,"""Everyone"" met at the station"', "2,Plain title"])
    convert("generic", raw / "pairs.tsv", tmp_path / "ml_out", user_col="user", item_col="item", time_col="time",
            items=str(raw / "titles.csv"), item_columns=["item", "title"], text_cols=["title"], progress=False)
    content = read_content(tmp_path / "ml_out")
    assert content["1"]["text"] == '"Everyone" met at the station' and content["2"]["text"] == "Plain title"
    write_lines(raw / "pairs2.tsv", ["u1\t1\t5", "u1\t2\t6", "u2\t1\t7"])
    write_lines(raw / "titles.tsv", ['1\t"""Everyone"" met at the station"', '2\t"""Heat"""'])
    assert convert_main(["generic", "--input", str(raw / "pairs2.tsv"), "--output", str(tmp_path / "ml_out2"),
                         "--columns", "user,item,time", "--user-col", "user", "--item-col", "item", "--time-col",
                         "time", "--items", str(raw / "titles.tsv"), "--item-columns", "item,title",
                         "--text-cols", "title", "--no-progress"]) == 0
    content = read_content(tmp_path / "ml_out2")
    assert content["1"]["text"] == '"Everyone" met at the station' and content["2"]["text"] == '"Heat"'
    assert read_inter(tmp_path / "ml_out2")[1][0] == ["u1", "1", "5"]


def test_csv_quoted_titles_in_pmmrec_tsv_files(tmp_path):
    raw = tmp_path / "morec"
    write_lines(raw / "news_users.tsv", ["u1\tn1 n2 n3"])
    write_lines(raw / "news_items_texts.tsv", ['n1\t"""Everyone"" met at the station"', 'n2\t"""Heat"""',
                                              'n3\tA "plain" title'])
    convert("pmmrec", raw, tmp_path / "news", progress=False)
    assert {k: v["text"] for k, v in read_content(tmp_path / "news").items()} == {
        "n1": '"Everyone" met at the station', "n2": '"Heat"', "n3": 'A "plain" title'}


def test_messages_name_the_file_and_what_was_expected(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "items.csv").write_bytes(bytes(range(128, 256)) * 40)  # binary, not a table
    write_lines(raw / "clicks.csv", ["user,item,time", "u1,a,1"])
    with pytest.raises(ConversionError, match=r"no line could be read as utf-8 text .* binary file"):
        convert("generic", raw / "clicks.csv", tmp_path / "o", user_col="user", item_col="item",
                items=str(raw / "items.csv"), text_cols=["title"], progress=False)
    write_lines(raw / "c2.csv", ["user,item,time", "u1,a,1441320000", "u1,a,1441320000", "u1,b,x" + "\u00ff" * 200])
    summary = convert("generic", raw / "c2.csv", tmp_path / "o2", user_col="user", item_col="item", time_col="time",
                      progress=False)
    duplicate = summary["skipped_examples"]["duplicate_interaction"][0]
    assert "time 1441320000)" in duplicate and "e+09" not in duplicate
    assert all(len(m) < 200 for m in summary["skipped_examples"]["malformed_value"])


def test_messages_about_binary_and_garbage_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Books.json").write_bytes(b"\n".join(bytes(range(128, 256)) for _ in range(30)))
    with pytest.raises(ConversionError, match=r"no interactions were read from .*Books\.json: 0 rows read; skipped: "
                                              r"30 bad_encoding .*is it a binary file\? Expected utf-8 text"):
        convert("amazon2018", raw / "Books.json", tmp_path / "b", progress=False)
    garbage = "\u00ff\u4e00" * 500
    write_lines(raw / "g.csv", [f"{garbage},{garbage}"])
    with pytest.raises(ConversionError, match=r"the header has: .{50,200}$") as err:
        convert("generic", raw / "g.csv", tmp_path / "g", user_col="user", item_col="item", progress=False)
    assert len(str(err.value)) < 400
    write_lines(raw / "x_users.tsv", [f"{garbage}\t", f"{garbage}\ti1", f"{garbage}\ti2"])
    summary = convert("pmmrec", raw / "x_users.tsv", tmp_path / "x", progress=False)
    examples = [m for kind in ("malformed_line", "duplicate_user") for m in summary["skipped_examples"][kind]]
    assert len(examples) == 2 and all(len(m) < 200 for m in examples)


def test_a_truncated_gzip_is_converted_only_on_request(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    data = "\n".join(review18(f"A{i}", f"B{i % 3}", 5.0, i) for i in range(400)).encode()
    (raw / "Books.json.gz").write_bytes(gzip.compress(data)[:-300])
    with pytest.raises(ConversionError, match="pass --allow-truncated"):
        convert("amazon2018", raw / "Books.json.gz", tmp_path / "b", progress=False)
    summary = convert("amazon2018", raw / "Books.json.gz", tmp_path / "b", allow_truncated=True, progress=False)
    lines_read = summary["truncated_files"][str(raw / "Books.json.gz")]
    assert 0 < lines_read < 400 and 0 < summary["filtered"]["rows_read"] <= lines_read


def test_the_summary_counts_each_filter(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_lines(raw / "clicks.csv", ["user,item,time,stars", "u1,a,1,5", "u1,a,1,5", "u1,b,2,1", "u1,c,3,5",
                                     "u2,a,4,5", "u2,zz,5,5", "u3,a,6,notanumber"])
    write_lines(raw / "items.csv", ["item,title", "a,A", "b,B", "c,C"])
    assert convert_main(["generic", "--input", str(raw / "clicks.csv"), "--output", str(tmp_path / "o"),
                         "--user-col", "user", "--item-col", "item", "--time-col", "time", "--rating-col", "stars",
                         "--items", str(raw / "items.csv"), "--text-cols", "title", "--min-rating", "3",
                         "--user-core", "2", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "o" / "o.summary.json").read_text())
    assert {k: summary["filtered"][k] for k in ("rows_read", "below_min_rating", "bad_rows", "dropped_unknown_items",
                                                "dropped_duplicates", "dropped_by_k_core")} == {
        "rows_read": 7, "below_min_rating": 1, "bad_rows": 1, "dropped_unknown_items": 1, "dropped_duplicates": 1,
        "dropped_by_k_core": 1}
    assert "removed per filter: below_min_rating 1, bad_rows 1, dropped_unknown_items 1" in capsys.readouterr().out


def test_images_from_a_map_file_for_any_dataset(tmp_path):
    raw = tmp_path / "raw"
    write_lines(raw / "clicks.csv", ["user,item,time", "u1,a,1", "u1,b,2", "u2,c,3"])
    write_lines(raw / "items.csv", ["item,title", "a,A", "b,B", "c,C"])
    (raw / "posters").mkdir()
    Image.new("RGB", (5, 7), (200, 10, 10)).save(raw / "posters" / "first.jpg")
    (raw / "posters" / "broken.jpg").write_bytes(b"not an image")
    write_lines(raw / "map.tsv", ["item_id\timage", "a\tposters/first.jpg", "b\tposters/broken.jpg",
                                  "zz\tposters/first.jpg"])
    summary = convert("generic", raw / "clicks.csv", tmp_path / "o", user_col="user", item_col="item", time_col="time",
                      items=str(raw / "items.csv"), text_cols=["title"], image_map=str(raw / "map.tsv"), progress=False)
    content = read_content(tmp_path / "o")
    assert content["a"]["image"].startswith("images/") and (tmp_path / "o" / content["a"]["image"]).is_file()
    assert content["b"]["image"] is None and content["c"]["image"] is None
    assert summary["items_with_image"] == 1 and summary["images"]["problems"] == 2  # broken b, none for c
    assert yaml.safe_load((tmp_path / "o" / "o.yaml").read_text())["item_modalities"] == ["text", "image"]
    with pytest.raises(ConversionError, match=r"bad\.tsv, line 2: expected two columns"):
        write_lines(raw / "bad.tsv", ["item_id\timage", "a\tb\tc"])
        convert("generic", raw / "clicks.csv", tmp_path / "o3", user_col="user", item_col="item",
                image_map=str(raw / "bad.tsv"), progress=False)


def test_the_poster_map_joins_on_title_and_year(tmp_path, capsys):
    posters = tmp_path / "posters"
    posters.mkdir()
    for movie in ("1", "2", "7", "9"):
        Image.new("RGB", (4, 4)).save(posters / f"{movie}.jpg")
    movies = ["1::Toy Story (1995)::Animation", "2::Postman, The (Postino, Il) (1994)::Drama",
              "3::Heat (1995)::Action", "7::Usual Suspects, The (1995)::Crime", "9::Misérables, Les (1995)::Drama"]
    (tmp_path / "movies.dat").write_bytes("\n".join(movies).encode("latin-1") + b"\n")  # as ml-1m ships it
    write_lines(tmp_path / "catalogue.item", ["item_id:token\tmovie_title:token_seq\trelease_year:token",
                                             "10\tToy Story\t1995", "11\tPostino, Il\t1994", "12\tHeat\t1995",
                                             "13\tThe Usual Suspects\t1995", "14\tNowhere\t1990",
                                             "15\tMisérables, Les\t1995"])
    out = tmp_path / "map.tsv"
    assert convert_main(["poster-map", "--posters", str(posters), "--movies", str(tmp_path / "movies.dat"),
                         "--items", str(tmp_path / "catalogue.item"), "--output", str(out)]) == 0
    rows = dict(line.split("\t") for line in out.read_text().splitlines()[1:])
    assert {k: v.rsplit("/", 1)[1] for k, v in rows.items()} == {"10": "1.jpg", "11": "2.jpg", "13": "7.jpg",
                                                                  "15": "9.jpg"}
    assert "4 of 6 items have a poster" in capsys.readouterr().out


def test_skipped_metadata_lines_are_not_counted_as_interaction_rows(tmp_path):
    # 2018 metadata files repeat records: meta_Magazine_Subscriptions.json.gz has 3,385 lines
    # for 2,320 asins, every repeat identical. Those lines (and malformed ones) are counted under
    # "skipped", never as interaction rows, so the per-filter counts add up to what was kept.
    raw = tmp_path / "raw"
    reviews = [review18(f"A{u}", f"B{i}", 5.0, 10 * u + i) for u in range(3) for i in range(3)]
    reviews += ['{"reviewerID": "A9", "asin": ', json.dumps({"reviewerID": "A9", "asin": "B1", "overall": 4.0})]
    write_lines(raw / "Magazines_5.json", reviews)
    meta = [json.dumps({"asin": f"B{i}", "title": f"Magazine {i}"}) for i in range(3)]
    write_lines(raw / "meta_Magazines.json", meta + [meta[0], meta[1], "{'asin': 'B2', 'title': "])
    summary = convert("amazon2018", raw / "Magazines_5.json", tmp_path / "mags", progress=False)
    counts = summary["filtered"]
    assert summary["interactions"] == 9 and summary["skipped"] == {
        "duplicate_item": 2, "malformed_line": 2, "missing_field": 1}
    assert counts["rows_read"] == 11 and counts["bad_rows"] == 2
    removed = sum(counts[k] for k in ("below_min_rating", "bad_rows", "dropped_unknown_items", "dropped_duplicates",
                                      "dropped_by_k_core"))
    assert counts["rows_read"] - removed == summary["interactions"]
    assert summary["rows_read"]["interactions"] == 11
