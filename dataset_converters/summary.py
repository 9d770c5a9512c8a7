"""The conversion summary: counts, what was skipped and why, written as JSON and printed."""

import json

from .atomic import replace_when_done


def build_summary(name, source, options, data, filtered, texts, collector, extra):
    """The summary dict of one conversion."""
    n_users, n_items = filtered.n_users, len(filtered.item_tokens)
    n_inter = len(filtered.rows)
    skipped = dict(sorted(data.issues.counts.items()))
    summary = {
        "name": name,
        "source": source,
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "density": n_inter / (n_users * n_items),
        "avg_sequence_length": n_inter / n_users,
        "items_with_text": sum(1 for t in filtered.item_tokens if texts.get(t)),
        "items_with_image": len(collector.images),
        "rows_read": {"interactions": data.interaction_rows_read(), "items": data.item_rows_read},
        "skipped": skipped,
        "skipped_examples": data.issues.examples,
        "filtered": filtered.counts,
        "encodings": dict(data.issues.encodings),
        "truncated_files": dict(data.issues.truncated),
        "rewritten_ids": {"count": len(data.rewritten),
                          "examples": dict(list(data.rewritten.items())[:5])},
        "text": {"template": data.template.template,
                 "fields_never_present": data.template.unseen_fields(),
                 "markup_only_fields_dropped": data.markup_only_fields},
        "images": {"problems": len(collector.problems)},
        "options": options,
    }
    summary.update(extra)
    return summary


def write_summary(path, summary):
    with replace_when_done(path) as f:
        json.dump(summary, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")


def format_summary(summary):
    """A few readable lines for the terminal."""
    lines = [
        f"dataset {summary['name']} ({summary['source']}): {summary['users']} users, "
        f"{summary['items']} items, {summary['interactions']} interactions, "
        f"density {summary['density']:.6f}",
        f"items with text: {summary['items_with_text']}, with image: {summary['items_with_image']}",
    ]
    if summary.get("skipped"):
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in summary["skipped"].items()))
    counts = summary.get("filtered", {})
    lines.append(f"rows read: {counts.get('rows_read')}; removed per filter: " + ", ".join(
        f"{k} {counts.get(k, 0)}" for k in ("below_min_rating", "bad_rows", "dropped_unknown_items",
                                             "dropped_duplicates", "dropped_by_max_seq_len", "dropped_by_k_core")))
    for path, lines_read in summary.get("truncated_files", {}).items():
        lines.append(f"warning: {path} is truncated: its first {lines_read} lines were converted")
    if summary.get("text", {}).get("markup_only_fields_dropped"):
        lines.append(f"text fields that were only HTML markup, dropped: {summary['text']['markup_only_fields_dropped']}")
    unseen = summary.get("text", {}).get("fields_never_present")
    if unseen:
        lines.append(f"warning: text fields never present in any item: {', '.join(unseen)}")
    images = summary.get("images", {})
    if images.get("urls") and "download" not in images:
        text_only = "" if images.get("copied_or_present") else (
            " (until then the dataset is text only; the download adds image to its item_modalities)")
        lines.append(f"{images['urls']} image URLs listed in {images['manifest']}; fetch them "
                     f"with: pmmrec-convert download-images {summary.get('output', 'DIR')}{text_only}")
    if images.get("download"):
        d = images["download"]
        lines.append(f"images downloaded: {d['downloaded']}, already present: "
                     f"{d['already_present']}, failed: {d['failed']} (see {d['report']})")
    elif images.get("problems"):
        lines.append(f"items with a missing or broken image: {images['problems']} "
                     f"(see {images.get('report')})")
    return "\n".join(lines)
