"""Reading shared by the Amazon Reviews formats: reviews first, then the meta records of
the reviewed items (so a multi-GB meta file is streamed, never held in memory)."""

from . import reading
from .issues import log
from .text import clean_text, only_markup

COMMA_LISTS = {"category", "categories", "also_buy", "also_view"}


def item_fields(row, fields, data):
    """Cleaned text of the template ``fields`` of a meta record (lists of categories are
    joined with commas, other lists with spaces); fields that are nothing but markup are
    dropped and counted in ``data.markup_only_fields``."""
    data.markup_only_fields += sum(only_markup(row.get(f)) for f in fields)
    return {f: clean_text(row.get(f), ", " if f in COMMA_LISTS else " ") for f in fields}


def read(input_path, opts, data, fmt):
    """Fill ``data`` from the reviews and meta files of format module ``fmt``, which gives
    ``SUFFIXES``, ``REQUIRED``, ``META_ID``, ``PYTHON_LITERALS``, ``interaction(row)`` ->
    (user, item, time, rating), ``image_url(row)`` and ``categories(row)``."""
    reviews, meta = reading.reviews_and_meta(input_path, opts.meta, fmt.SUFFIXES)
    encoding = opts.encoding or "utf-8"
    data.inter_file = reviews
    for line_no, row in reading.iter_json(reviews, data.issues, encoding, opts.progress):
        if not reading.missing_fields(row, fmt.REQUIRED, reviews, line_no, data.issues):
            data.add_interaction(reviews, line_no, *fmt.interaction(row))
    if meta is None:
        log.warning("no meta_* file found beside %s: items get no text", reviews)
        return {"reviews": str(reviews), "meta": None}
    data.item_file = meta
    for line_no, row in reading.iter_json(meta, data.issues, encoding, opts.progress,
                                          python_literals=fmt.PYTHON_LITERALS):
        token = data.token(row.get(fmt.META_ID))
        if token is None:
            reading.missing_fields(row, [fmt.META_ID], meta, line_no, data.issues)
        elif data.wants(token):
            data.add_item(meta, line_no, token, item_fields(row, data.template.fields, data),
                          image_url=fmt.image_url(row), categories=fmt.categories(row))
    return {"reviews": str(reviews), "meta": str(meta)}
