"""The installed version of confide."""

__version__ = "0.1.0"
