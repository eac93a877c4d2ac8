"""Private argument checks and time conversion shared by the analytics modules."""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_float_array",
    "check_in_range",
    "check_nonnegative",
    "check_positive",
    "check_same_length",
    "times_to_seconds",
]


def as_float_array(value, name: str, *, ndim: int | None = None) -> np.ndarray:
    """Return ``value`` as a float64 array, raising ``ValueError`` naming ``name``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    return arr


def _first_bad(arr: np.ndarray, bad: np.ndarray):
    idx = np.flatnonzero(np.ravel(bad))
    return np.ravel(arr)[idx[0]] if idx.size else None


def check_positive(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if any non-NaN element of ``arr`` is <= 0."""
    bad = arr <= 0
    if np.any(bad):
        raise ValueError(f"{name} must be > 0, got {_first_bad(arr, bad)!r}")


def check_nonnegative(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if any non-NaN element of ``arr`` is < 0."""
    bad = arr < 0
    if np.any(bad):
        raise ValueError(f"{name} must be >= 0, got {_first_bad(arr, bad)!r}")


def check_in_range(
    arr: np.ndarray,
    name: str,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` if an element of ``arr`` lies outside the interval."""
    below = arr < low if low_inclusive else arr <= low
    above = arr > high if high_inclusive else arr >= high
    bad = below | above
    if np.any(bad):
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lb}{low}, {high}{hb}, got {_first_bad(arr, bad)!r}")


def check_same_length(**arrays: np.ndarray) -> int:
    """Raise ``ValueError`` unless all 1-D arrays have the same length; return it."""
    lengths = {name: np.shape(a)[0] if np.ndim(a) else 1 for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"array lengths differ: {desc}")
    return next(iter(lengths.values())) if lengths else 0


def times_to_seconds(times, name: str = "times", *, strict: bool = False) -> np.ndarray:
    """Convert time stamps to float seconds and check that they are sorted.

    Parameters
    ----------
    times : array_like
        ``numpy.datetime64`` values (any unit; converted to seconds since the
        Unix epoch) or numbers already in seconds (any origin).
    name : str
        Name used in error messages.
    strict : bool
        Require strictly increasing times instead of non-decreasing.

    Returns
    -------
    numpy.ndarray
        1-D float64 seconds.
    """
    arr = np.asarray(times)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.datetime64):
        if np.any(np.isnat(arr)):
            raise ValueError(f"{name} must not contain NaT")
        ns = arr.astype("datetime64[ns]").astype(np.int64)
        seconds = ns.astype(np.float64) / 1e9
    elif np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
        seconds = arr.astype(np.float64)
        if not np.all(np.isfinite(seconds)):
            raise ValueError(
                f"{name} must be finite, got {_first_bad(seconds, ~np.isfinite(seconds))!r}"
            )
    else:
        raise ValueError(f"{name} must be datetime64 or float seconds, got dtype {arr.dtype}")
    if seconds.size > 1:
        d = np.diff(seconds)
        bad = d <= 0 if strict else d < 0
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            order = "strictly increasing" if strict else "sorted (non-decreasing)"
            raise ValueError(
                f"{name} must be {order}; element {i + 1} ({arr[i + 1]!r}) "
                f"does not follow element {i} ({arr[i]!r})"
            )
    return seconds
