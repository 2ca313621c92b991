"""The project's error types. A :class:`SesimError` is a problem the user can fix (a config key, a
file, a device, missing weights): ``sesim`` prints its message in one line and exits with 2.
Anything else that escapes a command is a bug in SeSim and keeps its traceback (exit 1).

Each subclass is also a ``ValueError`` (or what the library raised before), so library code
that caught those keeps working.
"""

from __future__ import annotations

import re


class SesimError(Exception):
    """A problem the user can fix; the message names the option or file and what to do."""


class ConfigError(SesimError, ValueError):
    """A configuration problem; the message names the key, flag or file."""


class DataError(SesimError, ValueError):
    """Input images or folders cannot be used as given."""


class CheckpointError(SesimError, ValueError):
    """A checkpoint cannot be used; the message names the file and the reason."""


class DeviceError(SesimError, ValueError):
    """The requested device does not exist here."""


class WeightsUnavailableError(SesimError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable; the message says where to put them."""


class ExportError(SesimError, ValueError):
    """The export cannot be done as asked (format, missing package); the message says what to do."""


class DiskFull(SesimError, OSError):
    """A write ran out of disk space; the message names the folder, what was needed and what is free."""


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC, also as ``torch.save``'s zip writer reports it (a ``RuntimeError`` about an
    "unexpected pos" or a failed file write, with no errno)."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("unexpected pos" in text or "file write failed" in text)


def disk_full(folder, needed_bytes: int | None, what: str, then: str) -> DiskFull:
    """The one line for a full disk: where, how much the write needed and how much is free."""
    import shutil

    def size(count: int) -> str:  # one decimal where whole MB would read "6 MB needed, 6 MB free"
        if count < 2**20:
            return f"{count / 2**10:.0f} kB"
        return f"{count / 2**20:.1f} MB" if count < 10 * 2**20 else f"{count / 2**20:.0f} MB"

    try:
        free = f"{size(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = "free space unknown"
    needed = f"~{size(needed_bytes)} needed, " if needed_bytes else ""
    return DiskFull(f"disk full at {folder}: {what} did not fit ({needed}{free}); {then}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command that kept what it had done; the message ("interrupted
    ...") says what that is and how to go on (``sesim`` prints it and exits with 130)."""


class OutOfMemory(SesimError, MemoryError):
    """A command needed more memory than its device has; the message says what ran out, at which
    size, and the setting to change."""


def one_line(error: BaseException) -> str:
    """The user-facing line of an error. An error re-raised from a data-loader worker carries the
    worker's traceback in its text: its last line is the original message (with the file)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    if "Original Traceback" in text:
        return re.sub(r"^[\w.]*(Error|Exception): ", "", text.splitlines()[-1])
    return text.splitlines()[0]
