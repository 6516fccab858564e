"""Names of a package loaded on first use (PEP 562), for its ``__init__``.

``import jaxsweep`` (or :mod:`jaxsweep.engine`, :mod:`jaxsweep.report`)
imports nothing heavy: each public name is imported when first looked up,
then kept in the package's namespace. So the command's ``--help``, a report
of a finished run and a JAX-free module of the engine never import JAX.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def attach(package: str, table: Mapping[str, tuple[str, str | None]],
           names: list[str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
  """A package's ``__getattr__`` and ``__dir__`` over ``table``.

  Args:
    package: the package's ``__name__``.
    table: public name -> ``(module, attribute)``; ``attribute`` None means
      the module itself.
    names: the package's ``__all__``.

  Returns:
    ``(__getattr__, __dir__)``, to assign at the package's top level.
  """

  def getattr_(name: str):
    try:
      module, attribute = table[name]
    except KeyError:
      raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
      value = getattr(value, attribute)
    setattr(sys.modules[package], name, value)  # Later lookups skip this function.
    return value

  def dir_() -> list[str]:
    return sorted({*vars(sys.modules[package]), *names})

  return getattr_, dir_
