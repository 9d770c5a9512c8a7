"""Interaction filters on integer-coded arrays: duplicates, last-N, k-core, ordering."""

import numpy as np


def duplicate_rows(users, items, times, rows):
    """``(duplicates, originals)``: rows among ``rows`` repeating an earlier row's
    (user, item, time), and for each the earlier row it repeats (file order)."""
    order = rows[np.lexsort((rows, times[rows], items[rows], users[rows]))]
    same = ((users[order][1:] == users[order][:-1]) & (items[order][1:] == items[order][:-1])
            & (times[order][1:] == times[order][:-1]))
    dup_pos = np.flatnonzero(same) + 1
    # the original of a run of repeats is the run's first row
    first_of_run = np.maximum.accumulate(np.where(np.concatenate(([False], same)), 0,
                                                  np.arange(len(order))))
    return order[dup_pos], order[first_of_run[dup_pos]]


def sort_rows(users, times, rows):
    """``rows`` ordered by user, then time, then file order."""
    return rows[np.lexsort((rows, times[rows], users[rows]))]


def keep_last(users, times, rows, n):
    """The rows among ``rows`` that are within each user's last ``n`` by time."""
    rows = sort_rows(users, times, rows)
    u = users[rows]
    starts = np.flatnonzero(np.concatenate(([True], u[1:] != u[:-1])))
    lengths = np.diff(np.concatenate((starts, [len(rows)])))
    pos = np.arange(len(rows)) - np.repeat(starts, lengths)
    return rows[pos >= np.repeat(lengths, lengths) - n]


def k_core(users, items, rows, user_min, item_min):
    """Drop rows of users with < ``user_min`` and items with < ``item_min`` rows, again and
    again until every remaining user and item meets its minimum. Returns ``(rows, rounds)``."""
    rounds = 0
    while len(rows):
        u, i = users[rows], items[rows]
        bad = (np.bincount(u)[u] < user_min) | (np.bincount(i)[i] < item_min)
        if not bad.any():
            break
        rows, rounds = rows[~bad], rounds + 1
    return rows, rounds
