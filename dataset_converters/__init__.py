"""Dataset converters: raw public datasets to RecBole atomic files plus item content.

A converted dataset is a folder ``NAME/`` holding ``NAME.inter`` (user, item, timestamp
and maybe rating), ``NAME.content.jsonl`` (``{"item_id", "text", "image"}`` per item),
images under ``images/``, ``NAME.summary.json`` and, when the source gives image URLs,
``NAME.image_urls.tsv`` plus ``NAME.image_report.tsv`` (missing or broken images).

Python API::

    from dataset_converters import convert, download_images
    summary = convert("amazon2018", "raw/Scientific", "data/Scientific", k_core=5)

Command line: ``pmmrec-convert SOURCE --input PATH --output DIR [options]`` (see
``pmmrec-convert --help``), also ``python -m dataset_converters``.
"""

import importlib

from .images import download_images
from .issues import ConversionError

SOURCES = ("amazon2018", "amazon2023", "movielens", "pmmrec", "generic")

__all__ = ["SOURCES", "ConversionError", "convert", "download_images"]


def convert(source, input, output, **options):
    """Convert ``input`` (a file or folder in ``source``'s published format) into the
    dataset folder ``output`` and return the summary dict (also written as JSON).

    ``options`` are the fields of :class:`dataset_converters.pipeline.Options`, e.g.
    ``k_core=5, max_seq_len=50, text_template="{title}. {brand}", strict=True``.
    Raises :class:`ConversionError` on unusable input, or on any bad row when strict.
    """
    from .pipeline import run

    if source not in SOURCES:
        raise ConversionError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    module = importlib.import_module(f".{source}", __name__)
    return run(module, source, input, output, options)
