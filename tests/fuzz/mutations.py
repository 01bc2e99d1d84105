"""Hypothesis strategies that damage a valid frame: byte flips, truncations, insertions."""

from __future__ import annotations

from hypothesis import strategies as st


def _apply(data: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, position, value, blob in edits:
        if kind == "flip" and buf:
            buf[position % len(buf)] ^= value or 1
        elif kind == "set" and buf:
            buf[position % len(buf)] = value
        elif kind == "truncate":
            del buf[position % (len(buf) + 1) :]
        elif kind == "insert":
            at = position % (len(buf) + 1)
            buf[at:at] = blob
        elif kind == "delete" and buf:
            at = position % len(buf)
            del buf[at : at + 1 + value % 8]
    return bytes(buf)


_edit = st.tuples(
    st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
    st.integers(0, 2000),
    st.integers(0, 255),
    st.binary(min_size=1, max_size=8),
)


def mutated(seed: bytes, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """`seed` with 1 to `max_edits` random edits."""
    return st.lists(_edit, min_size=1, max_size=max_edits).map(lambda edits: _apply(seed, edits))
