"""``pmmrec-convert``: the command line of the dataset converters.

    pmmrec-convert SOURCE --input PATH --output DIR [options]
    pmmrec-convert download-images DIR [--workers N] [--retries N] [--timeout S]
"""

import argparse
import logging
import sys

from . import SOURCES, convert, download_images
from .issues import ConversionError
from .summary import format_summary

SOURCE_HELP = {
    "amazon2018": "Amazon Reviews 2018/2014: reviews *.json(.gz) and meta_*.json(.gz)",
    "amazon2023": "Amazon Reviews 2023: reviews *.jsonl(.gz) and meta_*.jsonl(.gz)",
    "movielens": "MovieLens ml-100k, ml-1m, ml-latest(-small) or RecBole's atomic ml-100k",
    "pmmrec": "PMMRec/NineRec release: *_users.tsv, *_items_texts.tsv, images or LMDB",
    "generic": "any CSV/TSV/JSONL interaction file with named columns",
}


def _csv_list(value):
    return [v.strip() for v in value.split(",") if v.strip()]


def _common(parser):
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", "-i", help="the raw file or folder, as published")
    io.add_argument("--output", "-o", required=True,
                    help="the dataset folder to write; its name is the dataset name")
    io.add_argument("--name", help="dataset name (written to OUTPUT/NAME when it differs)")
    io.add_argument("--encoding", help="text encoding of the input (default: the source's)")
    io.add_argument("--strict", action="store_true",
                    help="stop at the first bad row instead of skipping and counting it")
    io.add_argument("--allow-truncated", action="store_true",
                    help="convert the readable part of a truncated .gz file (counted in the summary)")
    io.add_argument("--keep-unknown-items", action="store_true",
                    help="keep interactions whose item is not in the item file")
    io.add_argument("--keep-order", action="store_true",
                    help="write interactions in the input's order, not by user and time "
                         "(RecBole numbers users and items by first appearance)")
    io.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress bars")
    text = parser.add_argument_group("item text")
    text.add_argument("--text-template", help='e.g. "{title}. {brand}. {description}"; an empty '
                      "field is dropped with the separator before it")
    text.add_argument("--text-fields", type=_csv_list, help="fields joined with '. ' "
                      "(instead of a template)")
    filters = parser.add_argument_group("filters")
    filters.add_argument("--k-core", type=int, help="users and items with at least K "
                         "interactions, iterated until stable")
    filters.add_argument("--user-core", type=int, help="k-core minimum for users only")
    filters.add_argument("--item-core", type=int, help="k-core minimum for items only")
    filters.add_argument("--min-seq-len", type=int, help="drop users with fewer interactions")
    filters.add_argument("--max-seq-len", type=int,
                         help="keep each user's last N interactions (applied before the k-core)")
    filters.add_argument("--min-rating", type=float, help="keep interactions rated at least R")
    images = parser.add_argument_group("images")
    images.add_argument("--images", help="folder of <item>.<ext> image files")
    images.add_argument("--image-map", help="CSV/TSV of item id, image file (relative to the map): "
                        "images for any dataset, e.g. posters joined by pmmrec-convert poster-map")
    images.add_argument("--lmdb", help="LMDB of images keyed by item id (needs 'pip install lmdb')")
    images.add_argument("--download-images", action="store_true",
                        help="download the image URLs after converting")
    _download_options(images)


def _download_options(group):
    group.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    group.add_argument("--retries", type=int, default=2,
                       help="retries of a failed download (default 2)")
    group.add_argument("--timeout", type=float, default=30.0,
                       help="seconds per request (default 30)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pmmrec-convert",
        description="Convert a raw public dataset into RecBole atomic files plus item text "
                    "and images (NAME.inter, NAME.content.jsonl, images/, NAME.summary.json).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SOURCE")
    for source in SOURCES:
        p = sub.add_parser(source, help=SOURCE_HELP[source], description=SOURCE_HELP[source])
        _common(p)
        if source.startswith("amazon"):
            p.add_argument("--meta", help="the meta_* file (default: found beside the reviews)")
        if source == "movielens":
            p.add_argument("--variant", default="auto",
                           choices=["auto", "100k", "1m", "latest", "recbole"],
                           help="default: recognised by file names; without --input, "
                                "RecBole's bundled ml-100k")
        if source in ("pmmrec", "generic"):
            p.add_argument("--items", help="the item file (pmmrec: *_items_texts.tsv)")
        if source == "generic":
            g = p.add_argument_group("columns (generic)")
            g.add_argument("--format", choices=["csv", "tsv", "jsonl"])
            g.add_argument("--delimiter", help="CSV/TSV field delimiter")
            g.add_argument("--user-col", default="user_id")
            g.add_argument("--item-col", default="item_id")
            g.add_argument("--time-col", help="default: file order")
            g.add_argument("--time-format", default="auto",
                           help="auto (numbers or ISO 8601), unix, ms, or a strptime pattern")
            g.add_argument("--rating-col")
            g.add_argument("--text-cols", type=_csv_list, help="comma-separated text columns")
            g.add_argument("--image-col", help="image path (relative to the file) or URL column")
            g.add_argument("--columns", type=_csv_list,
                           help="the interaction file has no header: its columns, e.g. user,item,time")
            g.add_argument("--item-columns", type=_csv_list,
                           help="the item file has no header: its columns, e.g. item_id,title")
    p = sub.add_parser("poster-map", help="movie posters for a MovieLens catalogue, joined on title and year",
                       description="Write an item id -> poster file map (for --image-map) by joining a "
                                   "MovieLens item file to another release's movies.dat whose ids name the "
                                   "posters (<id>.jpg), on title and year.")
    p.add_argument("--posters", required=True, help="folder of <movie id>.jpg posters")
    p.add_argument("--movies", required=True, help="the movies.dat (id::title (year)::genres) of those ids")
    p.add_argument("--items", help="RecBole atomic .item file of the catalogue (default: RecBole's ml-100k)")
    p.add_argument("--output", "-o", required=True, help="the map file to write (TSV)")
    p = sub.add_parser("download-images", help="download the images of a converted dataset",
                       description="Fetch the URLs in DIR/NAME.image_urls.tsv into DIR/images "
                                   "(resumable), update the content file and the report.")
    p.add_argument("folder", metavar="DIR")
    _download_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def _poster_map(args):
    from .movielens import recbole_ml100k
    from .poster_map import poster_map, recbole_ml100k_items

    items = recbole_ml100k_items(args["items"] or recbole_ml100k() / "ml-100k.item")
    stats = poster_map(items, args["movies"], args["posters"], args["output"])
    print(f"{stats['matched']} of {stats['items']} items have a poster in {args['output']}; no matching movie: "
          f"{stats['no_match']}, matching movie without a poster file: {stats['no_poster']}")
    for kind, examples in stats["examples"].items():
        if examples:
            print(f"  {kind}, e.g.: {'; '.join(examples)}")
    return 0


def main(argv=None):
    """Entry point of ``pmmrec-convert``; returns the exit status."""
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    command = args.pop("command")
    try:
        if command == "poster-map":
            return _poster_map(args)
        if command == "download-images":
            stats = download_images(args.pop("folder"), **args)
            print(f"images downloaded: {stats['downloaded']}, already present: "
                  f"{stats['already_present']}, failed: {stats['failed']} (see {stats['report']})")
            return 0 if not stats["failed"] else 1
        source_input, output = args.pop("input"), args.pop("output")
        options = {k: v for k, v in args.items() if v is not None}
        summary = convert(command, source_input, output, **options)
    except ConversionError as err:
        print(f"pmmrec-convert: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0
