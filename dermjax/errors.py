"""User-facing errors: command lines print these as one line and exit non-zero."""


class DermjaxError(Exception):
    """Bad input or configuration; the message names the file/record/column and the problem."""
