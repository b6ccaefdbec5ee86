"""The leave-one-out split of the evaluation protocol (SPEC §2)."""

from __future__ import annotations

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
