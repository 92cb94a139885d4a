"""The one exception type users can cause, and the formatting of its message."""

from __future__ import annotations

__all__ = ["SegSEMError"]


class SegSEMError(ValueError):
    """An error caused by user input: a bad file, value, checkpoint or prompt.

    The message names the file or value and what was expected, in one line, so
    the CLI prints it as it is, without a traceback.

    Examples
    --------
    >>> raise SegSEMError("images/a.png: unreadable image (truncated PNG)")
    Traceback (most recent call last):
    ...
    segsem_lite.errors.SegSEMError: images/a.png: unreadable image (truncated PNG)
    """
