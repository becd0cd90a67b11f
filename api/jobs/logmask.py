"""Masking a job's environment values in its output, for readers who may see the job but not those values.

A job's output (`GET /v1/jobs/{id}/logs`) is what its command printed, and a command may print its environment;
operators may read every job's output but not other principals' environment values. `LogMask` replaces each value
(of at least `scheduler.dispatcher.SCRUB_MIN_CHARS` characters, as in a job's reasons) with ``***``, in a whole
text or in a stream whose chunks may split a value.

Pure: no I/O; must not decide who reads what (the job routes do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from scheduler.dispatcher import SCRUB_MIN_CHARS, masked


class LogMask:
    """``LogMask(values).text(whole)``, or ``feed(chunk)`` for each chunk of a stream then ``flush()``.

    A stream holds back the last (longest value - 1) characters of what it has seen, since a value may begin
    there and end in the next chunk; `flush` releases them at the end. Longer values are replaced first, so a
    value that contains another is masked whole."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = sorted({v for v in values if len(v) >= SCRUB_MIN_CHARS}, key=len, reverse=True)
        self._hold = max((len(v) for v in self.values), default=1) - 1
        self._pending = ""

    def text(self, whole: str) -> str:
        """`whole` with every value replaced."""
        return masked(whole, self.values)

    def feed(self, chunk: str) -> str:
        """What of the stream so far can be released, masked (possibly "")."""
        if not self.values:
            return chunk
        masked = self.text(self._pending + chunk)
        cut = max(0, len(masked) - self._hold)
        self._pending = masked[cut:]
        return masked[:cut]

    def flush(self) -> str:
        """The rest of the stream, masked (call once, at its end)."""
        rest, self._pending = self.text(self._pending), ""
        return rest

    async def stream(self, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        """`chunks` masked, chunk by chunk, and the held rest at the end."""
        async for chunk in chunks:
            released = self.feed(chunk)
            if released:
                yield released
        rest = self.flush()
        if rest:
            yield rest
