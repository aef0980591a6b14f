"""The error a measurement raises for a wrong argument, before it starts anything."""


class ArgumentError(ValueError):
    """A measurement's argument is wrong (the command line reports it: one line, exit 2).
    Its own class, so that a ValueError from a bug during a run is never read as bad input."""
