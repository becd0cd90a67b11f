"""`api.jobs.logmask.LogMask`: a job's environment values masked in its output, whole or streamed in chunks that
split a value anywhere."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from api.jobs.logmask import LogMask

SECRETS = ("hunter2-xyz", "tok_abcdef", "xyz")  # "xyz" is too short to be masked


def streamed(mask: LogMask, chunks: list[str]) -> str:
    """What the follow route sends for `chunks`."""

    async def source() -> AsyncIterator[str]:
        for chunk in chunks:
            yield chunk

    async def collect() -> str:
        return "".join([part async for part in mask.stream(source())])

    return asyncio.run(collect())


def test_values_of_four_or_more_characters_are_masked_and_shorter_ones_are_left() -> None:
    """Every occurrence of each long value reads ``***``; a 3-character value is left as printed."""
    text = "key=hunter2-xyz\ntoken tok_abcdef and hunter2-xyz again; xyz stays\n"
    assert LogMask(SECRETS).text(text) == "key=***\ntoken *** and *** again; xyz stays\n"


def test_a_mask_without_values_passes_a_stream_through_unchanged_and_at_once() -> None:
    """No environment (or only short values): each chunk is released whole, nothing held back."""
    mask = LogMask(["ab"])
    assert mask.feed("hello ") == "hello "
    assert mask.flush() == ""


@given(
    st.lists(st.sampled_from(["hunter2-xyz", "tok_abcdef", "xyz", "log line\n", "hunter2", " ", "*"]), max_size=30),
    st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_a_stream_cut_anywhere_masks_exactly_as_the_whole_text_does(pieces: list[str], cuts: list[int]) -> None:
    """Whatever the chunk boundaries (splitting values anywhere), the streamed output equals the whole text
    masked, and no long value is left in it."""
    whole = "".join(pieces)
    bounds = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    chunks = [whole[a:b] for a, b in itertools.pairwise(bounds)]
    out = streamed(LogMask(SECRETS), chunks)
    assert out == LogMask(SECRETS).text(whole)
    assert "hunter2-xyz" not in out
    assert "tok_abcdef" not in out
