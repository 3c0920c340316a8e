"""ShopStream's own errors: one root, and a marker that decides whether a retry can help.

Modelled on dlt's exception mixins: an error is :class:`TransientError` (the same work,
tried again later, can succeed: a connection dropped, a deadlock, the server restarting)
or :class:`TerminalError` (it will fail the same way every time: a statement timeout, a
missing privilege, a bug). Retries stop at terminal errors at once, and at transient ones
once a batch's retry budget is spent.
"""

from __future__ import annotations


class ShopStreamError(Exception):
    """Root of the errors ShopStream raises itself."""


class TransientError(ShopStreamError):
    """Retrying the same work later can succeed."""


class TerminalError(ShopStreamError):
    """Retrying cannot help: stop, say why, leave the input in place."""


class StopRequestedError(ShopStreamError):
    """The process was asked to stop while waiting to retry; nothing is wrong."""


class RetryBudgetSpentError(TerminalError):
    """Transient failures went on longer than the retry budget allows."""

    def __init__(self, what: str, attempts: int, seconds: float, last: BaseException) -> None:
        super().__init__(
            f"{what}: still failing after {attempts} attempts over {seconds:.0f} s"
            f" ({describe(last)})"
        )
        self.attempts = attempts
        self.last = last


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE a database error carries, if any."""
    state = getattr(error, "sqlstate", None)
    return state if isinstance(state, str) else None


def describe(error: BaseException) -> str:
    """An error's class and first line, for a one-line message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else 'no message'}"


class LoadFailedError(TerminalError):
    """A batch could not be committed: a terminal database error, or transient ones until
    the retry budget ran out. Nothing of the batch was written; its input stays."""

    def __init__(
        self,
        *,
        batch_id: int | None,
        source: str,
        sqlstate: str | None,
        detail: str,
        attempts: int,
        exhausted: bool,
    ) -> None:
        why = "retry budget spent" if exhausted else "terminal error"
        super().__init__(
            f"batch {batch_id if batch_id is not None else '?'} from {source} not loaded"
            f" ({why} after {attempts} attempt{'s' if attempts != 1 else ''}):"
            f" SQLSTATE {sqlstate or 'none'}: {detail}"
        )
        self.batch_id = batch_id
        self.source = source
        self.sqlstate = sqlstate
        self.detail = detail
        self.attempts = attempts
        self.exhausted = exhausted

    @classmethod
    def of(cls, batch_id: int | None, source: str, error: BaseException) -> LoadFailedError:
        """The failure of batch ``batch_id`` from ``source`` through ``error`` (a database
        error, or a spent budget carrying the last one)."""
        spent = isinstance(error, RetryBudgetSpentError)
        last = error.last if isinstance(error, RetryBudgetSpentError) else error
        return cls(
            batch_id=batch_id,
            source=source,
            sqlstate=sqlstate_of(last),
            detail=describe(last).split(": ", 1)[-1],
            attempts=error.attempts if isinstance(error, RetryBudgetSpentError) else 1,
            exhausted=spent,
        )
