"""User-facing errors.

Every mistake a user can make in a config file, on the command line or in a
call of the Python API raises :class:`ConfigError` (or a subclass). The message
names *where* (file, key) and *how to fix it*; the CLI prints it without a
traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from collections.abc import Iterable


class ConfigError(ValueError):
  """A mistake in a sweep's configuration, with where it is and how to fix it.

  Attributes:
    key: the dotted config path (or argument name) at fault, if any.
    file: the config file at fault, if any.
    fix: one sentence saying what to do instead.
  """

  def __init__(
      self,
      message: str,
      *,
      key: str | None = None,
      file: str | None = None,
      fix: str | None = None,
  ):
    self.key = key
    self.file = file
    self.fix = fix
    self.detail = message
    super().__init__(self._render())

  def _render(self) -> str:
    where = []
    if self.file:
      where.append(str(self.file))
    if self.key:
      where.append(f"key '{self.key}'")
    text = (": ".join([", ".join(where), self.detail])
            if where else self.detail)
    if self.fix:
      text += f"\n  fix: {self.fix}"
    return text

  def with_file(self, file: str) -> ConfigError:
    """Returns a copy of this error that also names `file`."""
    if self.file:
      return self
    return type(self)(self.detail, key=self.key, file=file, fix=self.fix)


class ModelError(ConfigError):
  """The model, loss or data do not fit together (shapes, signatures)."""


class CheckpointError(ConfigError):
  """A checkpoint or results directory is missing, corrupt or incompatible."""


def did_you_mean(name: str, options: Iterable[str]) -> str:
  """Returns ' Did you mean X?' for the closest option, or ''."""
  close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.6)
  return f" Did you mean '{close[0]}'?" if close else ""


def unknown_key(key: str, options: Iterable[str], *, what: str = "key",
                file: str | None = None, name: str | None = None) -> ConfigError:
  """Builds the error for an unknown key, listing the accepted ones.

  Args:
    key: the config path at fault.
    options: the accepted names.
    what: what the unknown thing is (``"activation"``).
    file: the config file, if any.
    name: the unknown name when it is a value of ``key`` (``key`` is then
      ``model.activation`` and ``name`` the unknown activation).
  """
  options = sorted(set(options))
  shown = key if name is None else name
  return ConfigError(
      f"unknown {what} '{shown}'.{did_you_mean(shown.rsplit('.', 1)[-1], options)}",
      key=key, file=file,
      fix=f"use one of: {', '.join(options)}" if options else None)


_LIBRARY_DIRS = (*(f"{os.sep}{name}{os.sep}" for name in ("jax", "jaxlib", "flax", "optax", "chex")),
                 os.path.dirname(os.path.abspath(__file__)) + os.sep)


def user_frame(e: BaseException) -> str:
  """``'in fn (file:line: code) '`` for the innermost frame of the user's code.

  Frames in JAX, Flax, Optax, chex and jaxsweep itself are skipped, so the
  message points at the user's model, loss or metric.
  """
  frames = [f for f in traceback.extract_tb(e.__traceback__)
            if not any(d in f.filename for d in _LIBRARY_DIRS)
            and os.path.basename(f.filename) not in ("contextlib.py", "functools.py")]
  if not frames:
    return ""
  f = frames[-1]
  return f"in {f.name} ({f.filename}:{f.lineno}: {(f.line or '').strip()}) "


def first_line(e: BaseException) -> str:
  """The first line of an exception's message (its type if empty)."""
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__


_MISSING_RE = re.compile(r"missing (?:a |\d+ )?required (?:positional |keyword-only )?"
                         r"arguments?: '?(\w+)'?")


def rejected_arguments(e: TypeError, *, slot: str, accepted: Iterable[str]) -> ConfigError:
  """The error for a component factory that rejects its arguments.

  A missing argument gets a fix saying how to pass a fixed value for it;
  anything else lists the arguments the factory accepts.

  Args:
    e: the factory's TypeError.
    slot: the component (``optimizer``, ``model``).
    accepted: the factory's argument names.

  Examples:
    >>> e = rejected_arguments(TypeError("missing a required argument: 'b1'"),
    ...                        slot="optimizer", accepted=["learning_rate", "b1"])
    >>> e.key
    'optimizer.b1'
  """
  missing = _MISSING_RE.search(str(e))
  if missing:
    arg = missing.group(1)
    return ConfigError(
        f"the {slot} factory needs '{arg}', which no setting gives ({first_line(e)}).",
        key=f"{slot}.{arg}",
        fix=f"give it a value: in Python js.run(..., fixed={{'{arg}': ...}}) (or sweep it), "
            f"in a config {slot}: {{{arg}: ...}}; or give the factory a default "
            f"({arg}=...)")
  return ConfigError(f"the {slot} rejected its arguments: {first_line(e)}", key=slot,
                     fix=f"it accepts: {', '.join(accepted)}")
