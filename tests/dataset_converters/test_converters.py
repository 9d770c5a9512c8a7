"""Dataset converters: each source from a tiny fixture in the publisher's format, loaded
back with RecBole; bad input in lenient and strict mode; image download from a local
HTTP server."""

import functools
import gzip
import io
import json
import pickle
import sys
import threading
import types
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dataset_converters import ConversionError, convert, filtering
from dataset_converters.cli import main
from dataset_converters.images import fetch
from dataset_converters.text import TextTemplate, clean_text


# ----------------------------------------------------------------- helpers
def write_lines(path, lines, encoding="utf-8"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode(encoding)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def image_bytes(colour, fmt="PNG"):
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), colour).save(buf, fmt)
    return buf.getvalue()


def read_inter(folder):
    lines = (folder / f"{folder.name}.inter").read_text(encoding="utf-8").splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def read_content(folder):
    with open(folder / f"{folder.name}.content.jsonl", encoding="utf-8") as f:
        return {row["item_id"]: row for row in map(json.loads, f)}


def load_recbole(folder):
    """Build RecBole's dataset from the converted folder (as the core does)."""
    from recbole.data import create_dataset

    from recbole_pmmrec.config import Config

    config = Config(model="SASRec", dataset=folder.name, config_dict={
        "data_path": str(folder.parent), "train_neg_sample_args": None, "show_progress": False,
        "state": "WARNING"})
    return create_dataset(config)


def check_loads(folder, users, items, interactions):
    """RecBole reads the same counts (plus its [PAD] ids) and every item has content."""
    ds = load_recbole(folder)
    assert (ds.user_num, ds.item_num, ds.inter_num) == (users + 1, items + 1, interactions)
    _, rows = read_inter(folder)
    content = read_content(folder)
    assert {r[1] for r in rows} == set(content)
    for row in content.values():
        if row["image"]:
            assert (folder / row["image"]).is_file()
    summary = json.loads((folder / f"{folder.name}.summary.json").read_text())
    assert (summary["users"], summary["items"], summary["interactions"]) == (
        users, items, interactions)
    return ds, summary


# ----------------------------------------------------------- Amazon 2018
def review18(user, item, rating, time):
    return json.dumps({"reviewerID": user, "asin": item, "overall": rating,
                       "unixReviewTime": time, "reviewText": "ok", "verified": True})


@pytest.fixture
def amazon2018_raw(tmp_path):
    raw = tmp_path / "raw18"
    write_lines(raw / "Industrial.json.gz", [
        review18("A1", "B001", 5.0, 1000),
        review18("A1", "B002", 4.0, 1100),
        review18("A2", "B001", 3.0, 1050),
        review18("A2", "B003", 5.0, 1200),
        review18("A3", "B002", 2.0, 900),
        review18("A3", "B001", 4.0, 1300),
        review18("A1", "B001", 5.0, 1000),  # line 7: duplicate of line 1
        "{this is not json",  # line 8
        review18("A4", "B999", 1.0, 1000),  # line 9: item not in the meta file
        json.dumps({"reviewerID": "A1", "asin": "B003", "unixReviewTime": 5}),  # line 10
    ])
    write_lines(raw / "meta_Industrial.json.gz", [
        json.dumps({"asin": "B001", "title": "Blue Widget", "brand": "Acme",
                    "description": ["A <b>fine</b> widget.", "Sturdy &amp; cheap."],
                    "category": ["Industrial & Scientific", "Lab Tools"],
                    "imageURLHighRes": ["https://images.example/B001.jpg"]}),
        str({"asin": "B002", "title": "Red Gadget", "description": "Plain text",
             "imageURL": ["https://images.example/B002s.jpg"], "brand": ""}),  # Python literal
        json.dumps({"asin": "B003", "title": "Green Thing", "description": [], "category": []}),
        json.dumps({"asin": "B004", "title": "Never reviewed"}),
        json.dumps({"asin": "B001", "title": "Blue Widget again"}),  # line 5: duplicate item
    ])
    return raw


def test_amazon2018_lenient(amazon2018_raw, tmp_path):
    out = tmp_path / "data" / "Industrial"
    summary = convert("amazon2018", amazon2018_raw, out, progress=False)
    header, rows = read_inter(out)
    assert header == "user_id:token\titem_id:token\ttimestamp:float\trating:float"
    assert rows == [["A1", "B001", "1000", "5"], ["A1", "B002", "1100", "4"],
                    ["A2", "B001", "1050", "3"], ["A2", "B003", "1200", "5"],
                    ["A3", "B002", "900", "2"], ["A3", "B001", "1300", "4"]]
    content = read_content(out)
    assert content["B001"] == {"item_id": "B001", "image": None,
                               "text": "Blue Widget. Acme. A fine widget. Sturdy & cheap."}
    assert content["B002"]["text"] == "Red Gadget. Plain text"
    assert content["B003"]["text"] == "Green Thing"
    assert summary["skipped"] == {"duplicate_interaction": 1, "duplicate_item": 1,
                                  "malformed_line": 1, "missing_field": 1, "unknown_item": 1}
    ex = summary["skipped_examples"]
    assert "Industrial.json.gz, line 7: repeats line 1" in ex["duplicate_interaction"][0]
    assert "Industrial.json.gz, line 8: not valid JSON" in ex["malformed_line"][0]
    assert "Industrial.json.gz, line 9: item 'B999' is not in" in ex["unknown_item"][0]
    assert "Industrial.json.gz, line 10: missing field(s) overall" in ex["missing_field"][0]
    assert "meta_Industrial.json.gz, line 5: item 'B001' appears again" in ex["duplicate_item"][0]
    manifest = (out / "Industrial.image_urls.tsv").read_text().splitlines()
    assert manifest == ["item_id\turl", "B001\thttps://images.example/B001.jpg",
                        "B002\thttps://images.example/B002s.jpg"]
    report = (out / "Industrial.image_report.tsv").read_text().splitlines()
    assert report[1].startswith("B003\t") and "no image" in report[1]
    item_lines = (out / "Industrial.item").read_text().splitlines()
    assert "B001\tIndustrial_&_Scientific Lab_Tools" in item_lines
    _, summary = check_loads(out, users=3, items=3, interactions=6)
    assert summary["items_with_text"] == 3 and summary["images"]["urls"] == 2


def test_amazon2018_strict_stops_at_first_bad_row(amazon2018_raw, tmp_path):
    with pytest.raises(ConversionError, match=r"Industrial\.json\.gz, line 8: not valid JSON"):
        convert("amazon2018", amazon2018_raw, tmp_path / "out" / "x", strict=True, progress=False)


def test_strict_duplicate_and_unknown_item(tmp_path):
    raw = tmp_path / "raw"
    reviews = [review18("A1", "B001", 5.0, 10), review18("A1", "B001", 5.0, 10)]
    write_lines(raw / "Toys.json", reviews)
    write_lines(raw / "meta_Toys.json", [json.dumps({"asin": "B001", "title": "T"})])
    with pytest.raises(ConversionError, match=r"Toys\.json, line 2: repeats line 1"):
        convert("amazon2018", raw / "Toys.json", tmp_path / "o", strict=True, progress=False)
    write_lines(raw / "Toys.json", [review18("A1", "B002", 5.0, 10)])
    with pytest.raises(ConversionError, match=r"Toys\.json, line 1: item 'B002' is not in"):
        convert("amazon2018", raw / "Toys.json", tmp_path / "o", strict=True, progress=False)
    summary = convert("amazon2018", raw / "Toys.json", tmp_path / "o", progress=False,
                      keep_unknown_items=True)
    assert summary["interactions"] == 1 and read_content(tmp_path / "o")["B002"]["text"] is None


# ----------------------------------------------------------- Amazon 2023
def review23(user, item, rating, ms):
    return json.dumps({"rating": rating, "title": "t", "text": "x", "images": [],
                       "asin": item + "-child", "parent_asin": item, "user_id": user,
                       "timestamp": ms, "helpful_vote": 0, "verified_purchase": True})


def test_amazon2023_k_core_iterates_until_stable(tmp_path):
    raw = tmp_path / "raw23"
    write_lines(raw / "All_Beauty.jsonl", [
        review23("U1", "P1", 5.0, 1600000000000),
        review23("U1", "P2", 4.0, 1600000100500),
        review23("U1", "P3", 3.0, 1600000200000),
        review23("U2", "P1", 5.0, 1600000300000),
        review23("U2", "P2", 1.0, 1600000400000),
        review23("U3", "P3", 2.0, 1600000500000),
    ])
    write_lines(raw / "meta_All_Beauty.jsonl", [
        json.dumps({"parent_asin": "P1", "title": "Soft Soap", "store": "Suds Co",
                    "features": ["lavender", "vegan"], "description": ["Cleans <i>well</i>."],
                    "categories": ["Beauty", "Bath"],
                    "images": [{"thumb": "t.jpg", "large": "L1.jpg", "variant": "PT01",
                                "hi_res": None},
                               {"thumb": "t0.jpg", "large": "L0.jpg", "variant": "MAIN",
                                "hi_res": "https://images.example/P1.jpg"}]}),
        json.dumps({"parent_asin": "P2", "title": "Hard Brush", "store": None, "features": [],
                    "description": [], "images": []}),
        json.dumps({"parent_asin": "P3", "title": "Comb", "images": []}),
    ])
    out = tmp_path / "data" / "Beauty"
    summary = convert("amazon2023", raw, out, k_core=2, progress=False,
                      text_template="{title} by {store}: {features}")
    assert read_inter(out)[1] == [["U1", "P1", "1600000000", "5"],
                                  ["U1", "P2", "1600000100.5", "4"],
                                  ["U2", "P1", "1600000300", "5"], ["U2", "P2", "1600000400", "1"]]
    assert summary["filtered"]["dropped_by_k_core"] == 2
    assert summary["filtered"]["k_core_rounds"] == 2
    content = read_content(out)
    assert content["P1"]["text"] == "Soft Soap by Suds Co: lavender vegan"
    assert content["P2"]["text"] == "Hard Brush"
    assert (out / "Beauty.image_urls.tsv").read_text().splitlines()[1:] == [
        "P1\thttps://images.example/P1.jpg"]
    check_loads(out, users=2, items=2, interactions=4)


# --------------------------------------------------------------- MovieLens
def test_movielens_100k(tmp_path):
    raw = tmp_path / "ml-100k"
    write_lines(raw / "u.data", ["1\t10\t4\t881250949", "1\t20\t3\t881250950",
                                 "2\t10\t5\t881250000", "2\t30\t2\t881250001",
                                 "3\t20", "3\t99\t1\t881250002"])
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    write_lines(raw / "u.genre", [f"{g}|{i}" for i, g in enumerate(genres)] + [""])

    def flags(*names):
        return "|".join("1" if g in names else "0" for g in genres)

    write_lines(raw / "u.item", [
        f"10|Café Society (1995)|01-Jan-1995||http://x|{flags('Comedy', 'Drama')}",
        f"20|Heat (1995)|01-Jan-1995||http://x|{flags('Action')}",
        f"30|unknown|||http://x|{flags('unknown')}",
    ], encoding="latin-1")
    out = tmp_path / "data" / "ml-small"
    summary = convert("movielens", raw, out, progress=False)
    assert summary["inputs"]["variant"] == "100k"
    content = read_content(out)
    assert content["10"]["text"] == "Café Society (1995). Genres: Comedy, Drama."
    assert content["30"]["text"] == "unknown. Genres: unknown."
    assert summary["skipped"] == {"malformed_line": 1, "unknown_item": 1}
    assert "u.data, line 5: expected 4 fields separated by '\\t', found 2" in \
        summary["skipped_examples"]["malformed_line"][0]
    assert "u.data, line 6: item '99' is not in" in summary["skipped_examples"]["unknown_item"][0]
    assert read_inter(out)[1][:2] == [["1", "10", "881250949", "4"], ["1", "20", "881250950", "3"]]
    check_loads(out, users=2, items=3, interactions=4)


def test_movielens_1m_and_latest(tmp_path):
    ml1m = tmp_path / "ml-1m"
    write_lines(ml1m / "ratings.dat", ["1::1193::5::978300760", "1::661::3::978302109",
                                       "2::1193::4::978298413"], encoding="latin-1")
    write_lines(ml1m / "movies.dat", ["1193::One Flew Over the Cuckoo's Nest (1975)::Drama",
                                      "661::James and the Giant Peach (1996)::"
                                      "Animation|Children's|Musical"], encoding="latin-1")
    out = tmp_path / "data" / "ml1m"
    summary = convert("movielens", ml1m, out, progress=False, text_template="{title} [{year}]")
    assert summary["inputs"]["variant"] == "1m"
    assert read_content(out)["661"]["text"] == "James and the Giant Peach (1996) [1996]"
    check_loads(out, users=2, items=2, interactions=3)

    latest = tmp_path / "ml-latest-small"
    write_lines(latest / "ratings.csv", ["userId,movieId,rating,timestamp",
                                         "1,1,4.0,964982703", "1,3,4.5,964981247",
                                         "2,1,2.5,964982224", "2,3,oops,964982225"])
    write_lines(latest / "movies.csv", ["movieId,title,genres",
                                        '1,"American President, The (1995)",Comedy|Drama|Romance',
                                        "3,Grumpier Old Men (1995),(no genres listed)"])
    out = tmp_path / "data" / "latest"
    summary = convert("movielens", latest, out, progress=False, min_rating=3)
    content = read_content(out)
    assert content["1"]["text"] == "American President, The (1995). Genres: Comedy, Drama, Romance."
    assert content["3"]["text"] == "Grumpier Old Men (1995)."
    assert "ratings.csv, line 5: rating 'oops' is not a number" in \
        summary["skipped_examples"]["malformed_value"][0]
    assert summary["filtered"]["below_min_rating"] == 1
    assert read_inter(out)[1] == [["1", "3", "964981247", "4.5"], ["1", "1", "964982703", "4"]]
    check_loads(out, users=1, items=2, interactions=2)


def test_movielens_bundled_recbole_ml100k_via_cli(tmp_path, capsys):
    out = tmp_path / "data" / "ml100k"
    assert main(["movielens", "--output", str(out), "--no-progress", "--max-seq-len", "50"]) == 0
    assert "dataset ml100k (movielens): 943 users" in capsys.readouterr().out
    assert read_content(out)["1"]["text"] == \
        "Toy Story (1995). Genres: Animation, Children's, Comedy."
    summary = json.loads((out / "ml100k.summary.json").read_text())
    n = summary["interactions"]
    assert summary["filtered"]["dropped_by_max_seq_len"] == 100000 - n
    ds, _ = check_loads(out, users=943, items=summary["items"], interactions=n)
    assert np.bincount(np.asarray(ds.inter_feat["user_id"])).max() == 50


# ------------------------------------------------------------ PMMRec format
@pytest.fixture
def pmmrec_raw(tmp_path):
    raw = tmp_path / "raw_pmm"
    write_lines(raw / "Scientific_users.tsv", [
        "u1\tv1 v2 v3", "u2\tv2 v3", "u3\tv1 v4", "u1\tv3", "u4\t"])
    write_lines(raw / "Scientific_items_texts.tsv", [
        "v1\tBlue hat", "v2\tRed coat", "v3\tGreen shoe"])
    return raw


def test_pmmrec_with_image_folder(pmmrec_raw, tmp_path):
    images = pmmrec_raw / "images"
    images.mkdir()
    (images / "v1.jpg").write_bytes(image_bytes((200, 10, 10), "JPEG"))
    (images / "v2.jpg").write_bytes(b"not an image at all")
    out = tmp_path / "data" / "Scientific"
    summary = convert("pmmrec", pmmrec_raw, out, max_seq_len=2, progress=False)
    assert read_inter(out) == ("user_id:token\titem_id:token\ttimestamp:float", [
        ["u1", "v2", "1"], ["u1", "v3", "2"], ["u2", "v2", "0"], ["u2", "v3", "1"],
        ["u3", "v1", "0"]])
    content = read_content(out)
    assert content["v1"] == {"item_id": "v1", "text": "Blue hat", "image": "images/v1.jpg"}
    assert content["v2"]["image"] is None and content["v3"]["image"] is None
    assert Image.open(out / "images" / "v1.jpg").size == (6, 4)
    report = (out / "Scientific.image_report.tsv").read_text().splitlines()
    assert report[1].startswith("v2\t") and "broken image" in report[1]
    assert report[2].startswith("v3\t") and "no image" in report[2]
    ex = summary["skipped_examples"]
    assert "Scientific_users.tsv, line 4: user 'u1' already has a sequence on line 1" in \
        ex["duplicate_user"][0]
    assert "Scientific_users.tsv, line 5: user 'u4' has no items" in ex["malformed_line"][0]
    assert "Scientific_users.tsv, line 3: item 'v4' is not in" in ex["unknown_item"][0]
    assert summary["items_with_image"] == 1
    check_loads(out, users=3, items=3, interactions=5)


class LMDB_Image:  # noqa: N801  (the name pickled in PMMRec/NineRec LMDB files)
    def __init__(self, image, id):
        self.channels = image.shape[2]
        self.size = image.shape[:2]
        self.image = image.tobytes()
        self.id = id


def fake_lmdb(store):
    """A stand-in for the optional ``lmdb`` package backed by a dict."""
    class Txn:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get(self, key):
            return store.get(key)

    class Env:
        def begin(self):
            return Txn()

        def close(self):
            pass

    module = types.ModuleType("lmdb")
    module.open = lambda path, **kwargs: Env()
    return module


def test_pmmrec_with_lmdb(pmmrec_raw, tmp_path, monkeypatch):
    (pmmrec_raw / "Scientific.lmdb").mkdir()
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[..., 1] = 255
    store = {b"1": pickle.dumps(LMDB_Image(pixels, "1")),  # item v1 under key 1, like PMMRec
             b"v2": image_bytes((0, 0, 255)),  # encoded bytes
             b"__len__": pickle.dumps(2)}
    monkeypatch.setitem(sys.modules, "lmdb", fake_lmdb(store))
    out = tmp_path / "data" / "Scientific"
    summary = convert("pmmrec", pmmrec_raw / "Scientific_users.tsv", out, progress=False)
    content = read_content(out)
    assert content["v1"]["image"] == "images/v1.jpg" and content["v2"]["image"] == "images/v2.png"
    with Image.open(out / "images" / "v1.jpg") as img:
        assert img.size == (6, 4) and img.getpixel((2, 2))[1] > 200
    assert content["v3"]["image"] is None and summary["images"]["problems"] == 1

    monkeypatch.setitem(sys.modules, "lmdb", None)  # the optional package is not installed
    with pytest.raises(ConversionError, match="optional 'lmdb' package"):
        convert("pmmrec", pmmrec_raw, tmp_path / "data" / "again", progress=False)


def test_pmmrec_with_a_real_lmdb(pmmrec_raw, tmp_path):
    lmdb = pytest.importorskip("lmdb")
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    env = lmdb.open(str(pmmrec_raw / "Scientific.lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"1", pickle.dumps(LMDB_Image(pixels, "1")))
        txn.put(b"v2", image_bytes((0, 0, 255)))
    env.close()
    out = tmp_path / "data" / "Scientific"
    summary = convert("pmmrec", pmmrec_raw / "Scientific_users.tsv", out, progress=False)
    content = read_content(out)
    with Image.open(out / "images" / "v1.jpg") as img:
        assert img.size == (6, 4) and img.getpixel((2, 2))[0] > 200
    assert content["v2"]["image"] == "images/v2.png"
    assert content["v3"]["image"] is None and summary["images"]["problems"] == 1


# ----------------------------------------------------------------- generic
def test_generic_csv_items_file_and_rewritten_ids(tmp_path):
    raw = tmp_path / "raw_gen"
    write_lines(raw / "clicks.csv", [
        "who,what,when,stars",
        "NA,a,2021-01-02T03:04:05Z,5",
        "NA,b,2021-01-02T03:05:05+00:00,4",
        'bob,"x""y",2021-01-03,3',
        "bob,a,yesterday,3",
        "bob,b,2021-01-04,2",
    ])
    write_lines(raw / "things.tsv", ["what\tname\tcolour\tpicture",
                                     "a\tHat\tred\tpics/a.png",
                                     "b\tCoat\t\t", 'x"y\tShoe\tblue\t'])
    (raw / "pics").mkdir()
    (raw / "pics" / "a.png").write_bytes(image_bytes((1, 2, 3)))
    out = tmp_path / "data" / "shop"
    summary = convert("generic", raw / "clicks.csv", out, user_col="who", item_col="what",
                      time_col="when", rating_col="stars", items=raw / "things.tsv",
                      text_cols="name,colour", image_col="picture", progress=False)
    assert read_inter(out)[1] == [
        ["NA_", "a", "1609556645", "5"], ["NA_", "b", "1609556705", "4"],
        ["bob", "x_y", "1609632000", "3"], ["bob", "b", "1609718400", "2"]]
    content = read_content(out)
    assert content["a"] == {"item_id": "a", "text": "Hat. red", "image": "images/a.png"}
    assert content["x_y"]["text"] == "Shoe. blue"
    assert summary["rewritten_ids"]["count"] == 2
    assert "clicks.csv, line 5: cannot read time 'yesterday'" in \
        summary["skipped_examples"]["malformed_value"][0]
    check_loads(out, users=2, items=3, interactions=4)


def test_generic_jsonl_missing_fields_columns_and_encoding(tmp_path):
    raw = tmp_path / "raw_gen"
    write_lines(raw / "log.jsonl", [
        json.dumps({"user_id": "u1", "item_id": "i1", "text": "first"}),
        json.dumps({"user_id": "u1", "text": "no item"}),
        json.dumps({"user_id": "u2", "item_id": "i1"}),
        json.dumps(["not", "an", "object"]),
    ])
    out = tmp_path / "data" / "log"
    summary = convert("generic", raw / "log.jsonl", out, text_cols=["text"], progress=False)
    assert "log.jsonl, line 2: missing field(s) item_id" in \
        summary["skipped_examples"]["missing_field"][0]
    assert "log.jsonl, line 4: expected a JSON object, got list" in \
        summary["skipped_examples"]["malformed_line"][0]
    assert read_content(out) == {"i1": {"item_id": "i1", "text": "first", "image": None}}
    assert read_inter(out)[1] == [["u1", "i1", "1"], ["u2", "i1", "3"]]

    write_lines(raw / "bad.csv", ["user,item", "u1,i1"])
    with pytest.raises(ConversionError, match=r"bad\.csv, line 1: column\(s\) item_id not found; "
                                              r"the header has: user, item"):
        convert("generic", raw / "bad.csv", out, user_col="user", progress=False)

    (raw / "mixed.csv").write_bytes(b"user_id,item_id\nu1,caf\xc3\xa9\nu2,caf\xe9\n")
    summary = convert("generic", raw / "mixed.csv", out, progress=False)
    assert summary["interactions"] == 1
    assert "mixed.csv, line 3: not valid utf-8" in summary["skipped_examples"]["bad_encoding"][0]
    with pytest.raises(ConversionError, match=r"mixed\.csv, line 3: not valid utf-8.*--encoding"):
        convert("generic", raw / "mixed.csv", out, strict=True, progress=False)


def test_name_option_and_stale_files(tmp_path):
    raw = write_lines(tmp_path / "log.csv", ["user_id,item_id,cat", "u1,i1,x", "u1,i2,y"])
    out = tmp_path / "data"
    summary = convert("generic", raw, out, name="clicks", text_cols="cat", image_col="cat",
                      progress=False)
    assert summary["output"] == str(out / "clicks")
    assert (out / "clicks" / "clicks.image_report.tsv").is_file()
    convert("generic", raw, out, name="clicks", progress=False)
    assert sorted(p.name for p in (out / "clicks").iterdir() if p.is_file()) == [
        "clicks.content.jsonl", "clicks.inter", "clicks.summary.json", "clicks.yaml"]


def test_cli_reports_errors(tmp_path, capsys):
    assert main(["generic", "--input", str(tmp_path / "none.csv"), "--output",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    assert "generic input must be a file" in capsys.readouterr().err
    with pytest.raises(TypeError, match="unknown conversion option"):
        convert("generic", tmp_path / "x.csv", tmp_path / "o", kcore=5)


# --------------------------------------------------------- image downloads
@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving ``www/``; yields (folder, base URL, log)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path == "/flaky.png" and requests.count(self.path) == 1:
                self.send_error(503)  # fails once, then serves the file
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_download_images_from_local_server(http_server, tmp_path, capsys):
    www, base, requests = http_server
    (www / "good.png").write_bytes(image_bytes((9, 99, 199)))
    (www / "text.jpg").write_bytes(b"<html>this is not an image</html>")
    raw = tmp_path / "raw_dl"
    write_lines(raw / "inter.tsv", [
        "user_id\titem_id\ttitle\timage",
        f"u1\tgood\tGood one\t{base}/good.png",
        f"u1\tgone\tMissing\t{base}/missing.png",
        f"u2\tjunk\tJunk\t{base}/text.jpg",
        "u2\tbare\tNo picture\t",
    ])
    out = tmp_path / "data" / "dl"
    summary = convert("generic", raw / "inter.tsv", out, text_cols=["title"], image_col="image",
                      download_images=True, retries=0, workers=2, progress=False)
    assert summary["images"]["download"] == {"urls": 3, "already_present": 0, "downloaded": 1,
                                             "failed": 2, "report": "dl.image_report.tsv"}
    assert summary["items_with_image"] == 1
    content = read_content(out)
    assert content["good"]["image"] == "images/good.png"
    assert content["gone"]["image"] is None and content["junk"]["image"] is None
    with Image.open(out / "images" / "good.png") as img:
        assert img.getpixel((0, 0)) == (9, 99, 199)
    report = {r.split("\t")[0]: r for r in
              (out / "dl.image_report.tsv").read_text().splitlines()[1:]}
    assert set(report) == {"gone", "junk", "bare"}
    assert "HTTP 404" in report["gone"] and "not a decodable image" in report["junk"]
    assert not list((out / "images").glob("*.part"))
    check_loads(out, users=2, items=4, interactions=4)

    # resumable: the present image is not fetched again, the failures are retried
    requests.clear()
    assert main(["download-images", str(out), "--retries", "0", "--no-progress"]) == 1
    assert "images downloaded: 0, already present: 1, failed: 2" in capsys.readouterr().out
    assert sorted(requests) == ["/missing.png", "/text.jpg"]
    assert read_content(out)["good"]["image"] == "images/good.png"
    # converting again reuses the downloaded file without any download
    requests.clear()
    summary = convert("generic", raw / "inter.tsv", out, text_cols=["title"], image_col="image",
                      progress=False)
    assert summary["items_with_image"] == 1 and requests == []
    assert yaml.safe_load((out / "dl.yaml").read_text())["item_modalities"] == ["text", "image"]


def test_image_urls_alone_leave_a_text_only_dataset_until_downloaded(http_server, tmp_path, capsys):
    # As on a machine without internet: the URLs are listed, nothing is fetched, so the
    # dataset must load as text only; the download then adds the image modality.
    www, base, _ = http_server
    (www / "good.png").write_bytes(image_bytes((9, 99, 199)))
    raw = tmp_path / "raw_urls"
    write_lines(raw / "inter.tsv", ["user_id\titem_id\ttitle\timage", f"u1\tgood\tGood one\t{base}/good.png",
                                    f"u1\tgone\tMissing\t{base}/missing.png", "u2\tbare\tNo picture\t"])
    out = tmp_path / "data" / "urls"
    assert main(["generic", "--input", str(raw / "inter.tsv"), "--output", str(out), "--text-cols", "title",
                 "--image-col", "image", "--no-progress"]) == 0
    assert "until then the dataset is text only" in capsys.readouterr().out
    assert yaml.safe_load((out / "urls.yaml").read_text())["item_modalities"] == ["text"]
    check_loads(out, users=2, items=3, interactions=3)
    assert main(["download-images", str(out), "--retries", "0", "--no-progress"]) == 1  # one URL fails
    settings = yaml.safe_load((out / "urls.yaml").read_text())
    assert settings["item_modalities"] == ["text", "image"] and settings["load_col"]["inter"][0] == "user_id"


def test_fetch_retries_transient_errors_only(http_server):
    www, base, requests = http_server
    (www / "flaky.png").write_bytes(image_bytes((1, 1, 1)))
    data, reason = fetch(f"{base}/flaky.png", timeout=5, retries=2, backoff=0.01)
    assert reason is None and data == (www / "flaky.png").read_bytes()
    assert requests == ["/flaky.png", "/flaky.png"]
    data, reason = fetch(f"{base}/absent.png", timeout=5, retries=2, backoff=0.01)
    assert data is None and reason == "HTTP 404" and requests.count("/absent.png") == 1
    assert fetch("file:///etc/passwd")[1].startswith("not an http(s) URL")


# ----------------------------------------------------------- shared pieces
def test_text_template_drops_empty_fields():
    t = TextTemplate("{title}. {brand}. {description}")
    assert t.render({"title": "Hat", "brand": "", "description": "Warm."}) == "Hat. Warm."
    assert t.render({"title": "", "brand": "Acme", "description": ""}) == "Acme"
    assert t.render({"title": "Dr. Who.", "brand": "BBC"}) == "Dr. Who. BBC"
    assert t.render({}) is None
    assert TextTemplate("{title}. Genres: {genres}.").render({"genres": "Drama"}) == \
        "Genres: Drama."
    assert t.unseen_fields() == []
    assert TextTemplate("{title} {colour}").unseen_fields() == ["title", "colour"]
    with pytest.raises(ConversionError, match="names no field"):
        TextTemplate("plain")
    assert clean_text(["a <br/>b", ["c &amp; d"], None, {"k": 1}]) == "a b c & d k: 1"


def test_filters():
    users = np.array([0, 0, 0, 1, 1, 2, 0])
    items = np.array([0, 1, 2, 0, 1, 2, 0])
    times = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 9.0, 1.0])
    rows = np.arange(7)
    dups, originals = filtering.duplicate_rows(users, items, times, rows)
    assert dups.tolist() == [6] and originals.tolist() == [0]
    rows = np.setdiff1d(rows, dups)
    assert sorted(filtering.keep_last(users, times, rows, 2).tolist()) == [1, 2, 3, 4, 5]
    kept, rounds = filtering.k_core(users, items, rows, 2, 2)
    assert sorted(kept.tolist()) == [0, 1, 3, 4] and rounds == 2
