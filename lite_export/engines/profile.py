"""Input profiles: the shapes an artifact's ranking graph accepts, and running any batch inside them.

A TensorRT plan accepts only the input shapes of the optimisation profile it was built with: "A
runtime error will be raised if the input tensor dimensions fall outside the valid range for this
profile" (TensorRT's ``IOptimizationProfile`` reference,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/OptimizationProfile.html
). ``lite export`` records one profile for every graph input in ``manifest.json``::

    "profile": {"item_ids":    {"min": [1, 1], "opt": [16, 50], "max": [256, 50]},
                "exclude_ids": {"min": [1, 1], "opt": [16, 50], "max": [256, 4096]}}

(``--min-shape/--opt-shape/--max-shape BATCH,HISTORY`` and ``--max-exclude H``), and the engines
that run the graph (``tensorrt``, ``onnxruntime``; the C++ library too) keep every call inside it
with :func:`run_in_profile`:

* batches above the profile's largest batch are split, and one below its smallest is padded
  with rows of pads (their answers dropped);
* inputs narrower than the profile's minimum are left-padded with the pad id (pads are masked by
  the model and excluding the pad id excludes nothing);
* an exclusion list longer than ``exclude_ids``' maximum is *chunked*: each history's distinct
  ids are excluded in the graph, the most recent first, up to the maximum, and the rest are
  masked from the graph's top-K afterwards. The answer equals the unchunked exclusion exactly:
  when the top-K of the graph minus the ids masked afterwards still holds ``k`` items, those
  are the top ``k`` of the catalog minus the whole list (every item outside the list that
  scores higher is in the graph's top-K too); when it does not, the ids that were masked
  afterwards but ranked high are moved into the graph's exclusion and the batch runs again.
  Only a history that needs more of its items excluded inside the graph than the profile allows
  raises :class:`ProfileError`, saying to re-export with a larger ``--max-exclude``.

The ``onnxruntime`` engine enforces the manifest's profile too (``enforce_profile=False`` turns it
off): the same artifact then answers through the same code path on every engine, so what a
TensorRT deployment does with long histories and large batches is what the CPU tests check.
Artifacts exported before the profile was recorded have no ``profile`` key and run unchanged
(the ``tensorrt`` engine then reads the profile from the plan itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_EXCLUDE",
    "DEFAULT_OPT_BATCH",
    "INPUTS",
    "InputProfile",
    "ProfileError",
    "ShapeRange",
    "run_in_profile",
]

#: The graph inputs a profile covers, in the order the graph takes them.
INPUTS = ("item_ids", "exclude_ids")
#: Profile defaults: batch min 1 / opt 16 / max 256; history up to the model's ``max_history``.
DEFAULT_OPT_BATCH = 16
DEFAULT_MAX_BATCH = 256
#: Default ``--max-exclude``: at most this many ids excluded inside the graph per history (capped
#: at the catalog size, which no list of distinct ids can exceed, so smaller catalogs never chunk).
#: A [256, 4096] int64 input is 8 MiB; the graph's scatter cost does not depend on it.
DEFAULT_MAX_EXCLUDE = 4096


class ProfileError(ValueError):
    """An input shape, or an export's profile option, outside what the profile allows."""


def _dims(value, what: str) -> tuple[int, int]:
    try:
        dims = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        raise ProfileError(f"{what} must be two integers [BATCH, WIDTH], got {value!r}") from None
    if len(dims) != 2 or min(dims) < 1:
        raise ProfileError(f"{what} must be two integers >= 1 [BATCH, WIDTH], got {value!r}")
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max ``[batch, width]`` of one rank-2 input."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def __post_init__(self) -> None:
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max, strict=True)):
            raise ProfileError(
                f"a profile needs min <= opt <= max in every dim, got min {list(self.min)}, "
                f"opt {list(self.opt)}, max {list(self.max)}"
            )

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == 2 and all(
            lo <= int(s) <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True)
        )

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: Mapping, what: str) -> ShapeRange:
        if not isinstance(data, Mapping) or not {"min", "opt", "max"} <= set(data):
            raise ProfileError(f"{what} must hold min, opt and max shapes, got {data!r}")
        return cls(*(_dims(data[key], f"{what}.{key}") for key in ("min", "opt", "max")))

    def __str__(self) -> str:
        return f"min {list(self.min)}, opt {list(self.opt)}, max {list(self.max)}"


@dataclass(frozen=True)
class InputProfile:
    """The profile of both graph inputs; ``source`` says where it was read."""

    item_ids: ShapeRange
    exclude_ids: ShapeRange
    source: str = "manifest.json"

    # ------------------------------------------------------------------ making one
    @classmethod
    def for_export(
        cls,
        max_history: int,
        num_items: int,
        *,
        min_shape: Sequence[int] | None = None,
        opt_shape: Sequence[int] | None = None,
        max_shape: Sequence[int] | None = None,
        max_exclude: int | None = None,
    ) -> InputProfile:
        """The profile ``lite export`` records; each error names the option to change.

        ``*_shape`` are ``(BATCH, HISTORY)`` of ``item_ids`` (defaults ``(1, 1)``,
        ``(16, max_history)``, ``(256, max_history)``); ``exclude_ids`` shares the batch range,
        its width runs from 1 (no exclusion) to ``max_exclude`` (default
        ``min(DEFAULT_MAX_EXCLUDE, num_items)``) with opt ``min(opt history, max_exclude)``.
        """
        lo = _dims(min_shape or (1, 1), "--min-shape")
        given_hi = _dims(max_shape, "--max-shape") if max_shape else None
        if opt_shape:
            opt = _dims(opt_shape, "--opt-shape")
        else:  # inside whatever range was given
            top = given_hi[0] if given_hi else DEFAULT_OPT_BATCH
            opt = (max(lo[0], min(DEFAULT_OPT_BATCH, top)), max(lo[1], max_history))
        hi = given_hi or (max(DEFAULT_MAX_BATCH, opt[0]), max(max_history, opt[1]))
        if hi[1] < max_history:
            raise ProfileError(
                f"--max-shape HISTORY is {hi[1]}, below the model's max_history {max_history}: "
                f"the engines send up to {max_history} items (the most recent ones) per history; "
                f"pass --max-shape {hi[0]},{max_history} (or more)"
            )
        if max_exclude is None:
            max_exclude = min(DEFAULT_MAX_EXCLUDE, num_items)
        if isinstance(max_exclude, bool) or not isinstance(max_exclude, int) or max_exclude < 1:
            raise ProfileError(
                f"--max-exclude must be an integer >= 1 (the most ids one history excludes "
                f"inside the graph; longer lists are chunked), got {max_exclude!r}"
            )
        try:
            items = ShapeRange(lo, opt, hi)
        except ProfileError as exc:
            raise ProfileError(f"--min-shape/--opt-shape/--max-shape: {exc}") from None
        excl_opt = max(1, min(opt[1], max_exclude))
        exclude = ShapeRange((lo[0], 1), (opt[0], excl_opt), (hi[0], max_exclude))
        return cls(items, exclude)

    @classmethod
    def from_manifest(cls, manifest: Mapping) -> InputProfile | None:
        """The manifest's ``profile``, or None for an artifact exported before it was recorded."""
        data = manifest.get("profile")
        if data is None:
            return None
        if not isinstance(data, Mapping) or set(INPUTS) - set(data):
            raise ProfileError(
                f"manifest.json: profile must hold {list(INPUTS)}, got {data!r}; re-run "
                "`lite export`"
            )
        return cls(*(ShapeRange.from_dict(data[n], f"manifest.json profile.{n}") for n in INPUTS))

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, Sequence], source: str) -> InputProfile:
        """From ``{name: (min, opt, max)}`` (e.g. a TensorRT plan's own profile)."""
        ranges = []
        for name in INPUTS:
            if name not in shapes:
                raise ProfileError(f"{source} has no profile for input {name!r}")
            ranges.append(ShapeRange(*(_dims(s, f"{source} {name}") for s in shapes[name])))
        return cls(*ranges, source=source)

    def to_manifest(self) -> dict[str, dict[str, list[int]]]:
        return {name: getattr(self, name).to_dict() for name in INPUTS}

    def tensorrt_shapes(self) -> tuple[dict, dict, dict]:
        """``(min_shapes, opt_shapes, max_shapes)`` for ``build_engine``."""
        return tuple(  # type: ignore[return-value]
            {name: getattr(getattr(self, name), which) for name in INPUTS}
            for which in ("min", "opt", "max")
        )

    # ------------------------------------------------------------------ using one
    @property
    def max_batch(self) -> int:
        return min(self.item_ids.max[0], self.exclude_ids.max[0])

    @property
    def min_batch(self) -> int:
        return max(self.item_ids.min[0], self.exclude_ids.min[0])

    def check(self, name: str, shape: Sequence[int]) -> None:
        """Raise :class:`ProfileError` naming the input, its shape and the profile."""
        rng = getattr(self, name)
        if not rng.contains(shape):
            raise ProfileError(
                f"input {name} of shape {[int(s) for s in shape]} is outside the profile of "
                f"{self.source} ({rng}). {_FIX[name]}"
            )


_FIX = {
    "item_ids": "Re-export with `lite export --max-shape BATCH,HISTORY` covering it (HISTORY at "
    "least the model's max_history; with --format tensorrt this rebuilds model.plan)",
    "exclude_ids": "Re-export with a larger `lite export --max-exclude` (and --max-shape BATCH for "
    "larger batches), or recommend with exclude_seen=False",
}

RunFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _left_pad(a: np.ndarray, width: int, pad: int) -> np.ndarray:
    if a.shape[1] >= width:
        return a
    out = np.full((a.shape[0], width), pad, dtype=np.int64)
    out[:, width - a.shape[1] :] = a
    return out


def _call(run: RunFn, profile: InputProfile, item_ids, exclude_ids, pad: int):
    """One graph call with the shapes fitted to the profile's minimum (pads added, then dropped)."""
    b = item_ids.shape[0]
    item_ids = _left_pad(item_ids, profile.item_ids.min[1], pad)
    exclude_ids = _left_pad(exclude_ids, profile.exclude_ids.min[1], pad)
    if b < profile.min_batch:
        extra = profile.min_batch - b
        item_ids = np.concatenate([item_ids, np.full((extra, item_ids.shape[1]), pad, np.int64)])
        exclude_ids = np.concatenate(
            [exclude_ids, np.full((extra, exclude_ids.shape[1]), pad, np.int64)]
        )
    profile.check("item_ids", item_ids.shape)
    profile.check("exclude_ids", exclude_ids.shape)
    scores, indices = run(np.ascontiguousarray(item_ids), np.ascontiguousarray(exclude_ids))
    return np.asarray(scores)[:b], np.asarray(indices)[:b]


def _distinct_recent(row: np.ndarray, pad: int) -> list[int]:
    """The row's ids without pads, each once at its most recent position, oldest first."""
    seen: set[int] = set()
    out: list[int] = []
    for v in row[::-1].tolist():
        if v != pad and v not in seen:
            seen.add(v)
            out.append(v)
    return out[::-1]


def _chunked(run: RunFn, profile: InputProfile, item_ids, exclude_ids, k: int, pad: int):
    """One batch (within the batch range) whose exclusion is wider than the profile allows."""
    max_h = profile.exclude_ids.max[1]
    b = item_ids.shape[0]
    lists = [_distinct_recent(row, pad) for row in exclude_ids]
    excluded = [set(lst) for lst in lists]
    promoted: list[list[int]] = [[] for _ in range(b)]  # ids found ranking high, per row
    scores_out = np.full((b, k), -np.inf, dtype=np.float32)
    indices_out = np.zeros((b, k), dtype=np.int64)
    pending = set(range(b))
    while pending:
        inside = []
        for r in range(b):
            chosen = set(promoted[r])
            rest = [v for v in lists[r] if v not in chosen]
            room = max_h - len(promoted[r])
            inside.append(promoted[r] + (rest[-room:] if room > 0 else []))
        width = max(1, max(len(s) for s in inside))
        exc = np.full((b, width), pad, dtype=np.int64)
        for r, s in enumerate(inside):
            if s:
                exc[r, width - len(s) :] = s
        # every row runs each round, so a row's scores never depend on which rows are pending
        scores, indices = _call(run, profile, item_ids, exc, pad)
        for r in sorted(pending):
            in_graph = set(inside[r])
            kept = [
                j for j, i in enumerate(indices[r].tolist()) if i not in excluded[r] and i != pad
            ]
            exhausted = bool(np.isneginf(scores[r]).any())  # every item outside the graph's list
            if len(kept) >= k or exhausted:
                n = min(k, len(kept))
                scores_out[r, :n] = scores[r, kept[:n]]
                indices_out[r, :n] = indices[r, kept[:n]]
                if n < k:  # fewer items than k outside the list: excluded ones at -inf, in
                    # ONNX TopK's tie order (the lower index first), like the unchunked graph
                    indices_out[r, n:] = sorted(excluded[r])[: k - n]
                pending.discard(r)
                continue
            found = [i for i in indices[r].tolist() if i in excluded[r] and i not in in_graph]
            promoted[r].extend(found)
            if len(promoted[r]) > max_h:
                raise ProfileError(
                    f"a history excludes {len(lists[r])} distinct ids and more than {max_h} of "
                    f"them (the profile's largest exclude_ids width) rank among its top "
                    f"{scores.shape[1]}, so its top-{k} cannot be found within the profile of "
                    f"{profile.source} ({profile.exclude_ids}). {_FIX['exclude_ids']}"
                )
    return scores_out, indices_out


def run_in_profile(
    run: RunFn,
    item_ids: np.ndarray,
    exclude_ids: np.ndarray,
    k: int,
    profile: InputProfile,
    pad: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``run(item_ids, exclude_ids) -> (scores, indices [b, K])`` over a batch of any size and
    exclusion width, every call inside ``profile``; returns ``scores, indices [B, k]``.

    ``item_ids [B, L]`` / ``exclude_ids [B, H]`` are int64, left-padded with ``pad``. Raises
    :class:`ProfileError` for an ``item_ids`` wider than the profile (the model reads at most
    ``max_history`` items, so this means the plan was built for shorter histories) and for a
    history whose exclusion cannot be chunked (see the module docstring).
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    exclude_ids = np.asarray(exclude_ids, dtype=np.int64)
    if item_ids.shape[1] > profile.item_ids.max[1]:
        profile.check("item_ids", (min(item_ids.shape[0], profile.max_batch), item_ids.shape[1]))
    out_s, out_i = [], []
    step = profile.max_batch
    for start in range(0, item_ids.shape[0], step):
        ids, exc = item_ids[start : start + step], exclude_ids[start : start + step]
        if exc.shape[1] > profile.exclude_ids.max[1]:
            scores, indices = _chunked(run, profile, ids, exc, k, pad)
        else:
            scores, indices = _call(run, profile, ids, exc, pad)
        out_s.append(np.asarray(scores)[:, :k])
        out_i.append(np.asarray(indices)[:, :k])
    return np.concatenate(out_s), np.concatenate(out_i)
