"""The leave-one-out split of the evaluation protocol (SPEC §2)."""

from __future__ import annotations

import random

from .base import LeaveOneOutSplit, SequenceDataset


def leave_one_out(ds: SequenceDataset) -> LeaveOneOutSplit:
    """Split every user's sequence by time: last item = test, second-to-last = validation.

    For a user with sequence ``s`` of length >= 3:
    ``train[u] = s[:-2]``, ``valid`` gets ``(s[:-2], s[-2])`` and ``test`` gets
    ``(s[:-1], s[-1])``. A user with fewer than 3 interactions keeps the whole sequence in
    ``train`` and has no validation/test example. ``train`` has one entry per user (same order
    as ``ds.sequences``); ``eval_users[j]`` is the user of ``valid[j]`` / ``test[j]``.
    ``popularity[i]`` counts item ``i`` over the training sequences only (the validation and
    test targets are not counted). Histories are full (not cut to ``ds.max_history``): the
    batching code keeps the most recent items, and the evaluator can mask the whole history.
    New lists are returned; the dataset is not modified.
    """
    train: list[list[int]] = []
    valid: list[tuple[list[int], int]] = []
    test: list[tuple[list[int], int]] = []
    eval_users: list[int] = []
    popularity = [0] * ds.num_items
    for u, seq in enumerate(ds.sequences):
        if len(seq) >= 3:
            history = list(seq[:-2])
            train.append(history)
            valid.append((list(history), seq[-2]))
            test.append((list(seq[:-1]), seq[-1]))
            eval_users.append(u)
        else:
            history = list(seq)
            train.append(history)
        for item in history:
            popularity[item] += 1
    return LeaveOneOutSplit(
        train=train, valid=valid, test=test, popularity=popularity, eval_users=eval_users
    )


def cold_start_split(ds: SequenceDataset, fraction: float = 0.1, seed: int = 0) -> LeaveOneOutSplit:
    """Leave-one-out with a seeded ``fraction`` of the items held out entirely (cold start).

    The held-out items (``cold_items``, ``round(fraction * N)`` of them, drawn uniformly with
    ``random.Random(seed)``) are removed from every training sequence, validation history and
    validation target, and from every test history. Each user's last item stays the test target,
    whatever it is: ``test_subset("cold")`` are the users whose target is a held-out item, which
    the model never saw, ``test_subset("warm")`` the others. For a user with sequence ``s``, let
    ``w`` be ``s[:-1]`` without held-out items; with ``len(w) >= 2``: ``train[u] = w[:-1]``,
    ``valid`` gets ``(w[:-1], w[-1])`` and ``test`` gets ``(w, s[-1])``; otherwise the user only
    trains (on ``w``). Popularity counts the training sequences, so held-out items count 0.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out item fraction must be in (0, 1), got {fraction}")
    n = ds.num_items
    count = round(fraction * n)
    if not 1 <= count < n:
        raise ValueError(
            f"holding out {fraction:g} of {n} items leaves {count} held-out items; "
            "choose a fraction that holds out at least one item and keeps one"
        )
    cold = sorted(random.Random(seed).sample(range(n), count))
    held = set(cold)
    train: list[list[int]] = []
    valid: list[tuple[list[int], int]] = []
    test: list[tuple[list[int], int]] = []
    eval_users: list[int] = []
    popularity = [0] * n
    for u, seq in enumerate(ds.sequences):
        warm = [i for i in seq[:-1] if i not in held]
        if len(seq) >= 3 and len(warm) >= 2:
            history = warm[:-1]
            valid.append((list(history), warm[-1]))
            test.append((list(warm), seq[-1]))
            eval_users.append(u)
        else:
            history = warm + ([seq[-1]] if seq and seq[-1] not in held else [])
        train.append(history)
        for item in history:
            popularity[item] += 1
    return LeaveOneOutSplit(
        train=train,
        valid=valid,
        test=test,
        popularity=popularity,
        eval_users=eval_users,
        cold_items=cold,
    )
