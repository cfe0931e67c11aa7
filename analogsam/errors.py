"""One exception family for everything a user can cause.

Every error that bad input, a missing file or an unreproducible setting can raise derives from
:class:`AnalogsamError`. Its message is one line that names the thing, the place and what to do;
the command line prints it as ``error: <message>`` with exit code 2 and no traceback (``--debug``
shows the traceback). Each subclass also derives from the built-in exception it refines
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` in existing code keeps working.
"""

from __future__ import annotations


class AnalogsamError(Exception):
    """Base of every error a user can cause; its message says what to do."""


class InvalidParameterError(AnalogsamError, ValueError, TypeError):
    """A parameter of an API call or a command-line flag has a wrong type or an out-of-range value."""


class ConversionError(AnalogsamError, ValueError):
    """The model holds layers that cannot be mapped onto analog tiles.

    Here, in the base layer, because both the conversion (:mod:`analogsam.hardware.conversion`) and
    the layer rewrites it calls (:mod:`analogsam.hardware.mapping`) raise it: defined in either, it
    would make the two import each other.
    """
