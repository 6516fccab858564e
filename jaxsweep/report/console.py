"""What the console can show: a terminal or not, rich or not, which format.

Shared by the tables (:mod:`jaxsweep.report.tables`) and the progress
display (:mod:`jaxsweep.report.progress`). rich is optional and imported
only to check that it is there.
"""

from __future__ import annotations

from jaxsweep import errors

# Console and file table formats; "auto" is rich in a terminal, else plain.
FORMATS = ("auto", "rich", "plain", "markdown", "csv", "json")


def isatty(stream) -> bool:
  """Whether ``stream`` is a terminal (False for anything without ``isatty``)."""
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):
    return False


def has_rich() -> bool:
  """Whether rich can be imported."""
  try:
    import rich  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def resolve_format(fmt_name: str, stream) -> str:
  """The format to use: ``auto`` and an unavailable ``rich`` resolved.

  Raises:
    ConfigError: for a name not in :data:`FORMATS`.
  """
  if fmt_name not in FORMATS:
    raise errors.ConfigError(f"unknown format {fmt_name!r}.", key="format",
                             fix=f"use one of: {', '.join(FORMATS)}")
  if fmt_name == "auto":
    return "rich" if isatty(stream) and has_rich() else "plain"
  if fmt_name == "rich" and not has_rich():
    return "plain"
  return fmt_name
