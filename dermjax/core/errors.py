"""User-facing errors: command lines print these as one line and exit with `exit_status`.

The statuses are a scheduler's contract (README, "Exit codes"): 2 is bad input or config and
rerunning unchanged cannot help, so it must not be requeued; 75 (EX_TEMPFAIL) is a temporary
failure that the same command, rerun, resumes from; any traceback (status 1) is a bug.
"""

EXIT_BAD_INPUT = 2
EXIT_TEMPORARY = 75


class DermjaxError(Exception):
    """Bad input or configuration; the message names the file/record/column and the problem."""
    exit_status = EXIT_BAD_INPUT


class TemporaryError(DermjaxError):
    """Worth rerunning unchanged: an endpoint that stopped answering, a lost peer."""
    exit_status = EXIT_TEMPORARY


def first_line(error: BaseException, limit: int = 240) -> str:
    """An exception as one short line (orbax, tensorstore and Riegeli errors run to pages)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[:limit] + "..."
