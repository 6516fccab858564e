"""Names for config files: one registry class for models, optimizers, losses, data.

A config names its components (``model: {name: mlp}``); each kind of
component has one :class:`Registry` mapping those names to factories, as
big_vision looks its modules up by name. Register your own with the
registry's decorator::

  @js.models.register("my_mlp")
  def my_mlp(*, width: int = 64, num_outputs: int = 10):
    return MyMLP(width, num_outputs)

Examples:
  >>> from jaxsweep.components import registry
  >>> colours = registry.Registry("colour", default="red")
  >>> _ = colours.register("red")(lambda: "#f00")
  >>> colours.get("red")(), colours.names(), "blue" in colours
  ('#f00', ['red'], False)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from jaxsweep import errors


class Registry:
  """Names -> factories of one kind of component.

  Attributes:
    kind: what is registered (``"model"``, ``"dataset"``, ...), for messages.
    slot: the config section its names are given in (``model``, ``data``...).
    default: the name used when a config gives none.
  """

  def __init__(self, kind: str, *, slot: str | None = None, default: str | None = None):
    self.kind = kind
    self.slot = slot or kind
    self.default = default
    self._items: dict[str, Callable[..., Any]] = {}

  def register(self, name: str) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn`` under ``name`` (a later one replaces it)."""
    def deco(fn):
      self._items[name] = fn
      return fn
    return deco

  def get(self, name: str | None = None) -> Callable[..., Any]:
    """The factory registered as ``name`` (default: :attr:`default`).

    Raises:
      ConfigError: for an unknown name, listing the known ones.
    """
    name = self.default if name is None else name
    if not isinstance(name, str):
      raise errors.ConfigError(
          f"a {self.kind} name is a string, got {type(name).__name__} {name!r}.",
          key=f"{self.slot}.name", fix=f"use one of: {', '.join(self.names())}")
    if name not in self._items:
      raise errors.ConfigError(
          f"unknown {self.kind} '{name}'.{errors.did_you_mean(name, self._items)}",
          key=f"{self.slot}.name", fix=f"use one of: {', '.join(self.names())}")
    return self._items[name]

  def build(self, name: str, **kwargs) -> Any:
    """Calls the factory ``name`` with ``kwargs``, refusing unknown arguments.

    Raises:
      ConfigError: for an unknown name or argument, listing the accepted ones.
    """
    fn = self.get(name)
    accepted = signature_args(fn)
    if not takes_var_kwargs(fn):
      for k in kwargs:
        if k not in accepted:
          raise errors.unknown_key(f"{self.slot}.{k}", [f"{self.slot}.{p}" for p in accepted],
                                   what=f"argument of {self.kind} '{name}'")
    missing = [k for k, d in accepted.items() if d is inspect.Parameter.empty and k not in kwargs]
    if missing:
      raise errors.ConfigError(
          f"the {self.kind} '{name}' needs {', '.join(missing)}, which is not given.",
          key=f"{self.slot}.{missing[0]}",
          fix=f"set {self.slot}: {{name: {name}, {missing[0]}: ...}}")
    return fn(**kwargs)

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._items)

  def accepted_args(self, name: str | None = None) -> dict[str, Any]:
    """Keyword arguments of a factory with their defaults (``inspect.Parameter.empty``)."""
    return signature_args(self.get(name))

  def __contains__(self, name: object) -> bool:
    return name in self._items

  def __repr__(self) -> str:
    return f"Registry({self.kind!r}, {self.names()})"


def signature_args(fn: Callable) -> dict[str, Any]:
  """Named arguments of ``fn`` and their defaults (no ``*args``/``**kwargs``)."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return {}
  return {n: p.default for n, p in params.items()
          if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def takes_var_kwargs(fn: Callable) -> bool:
  """Whether ``fn`` accepts ``**kwargs``."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return any(p.kind == p.VAR_KEYWORD for p in params.values())
