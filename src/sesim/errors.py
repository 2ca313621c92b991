"""The project's error types. A :class:`SesimError` is a problem the user can fix (a config key, a
file, a device, missing weights): ``sesim`` prints its message in one line and exits with 2.
Anything else that escapes a command is a bug in SeSim and keeps its traceback (exit 1).

Each subclass is also a ``ValueError`` (or what the library raised before), so library code
that caught those keeps working.
"""

from __future__ import annotations


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
