"""Names for config files: one registry class for models, optimizers, losses, data.

A config names its components (``model: {name: mlp}``); each kind of
component has one :class:`Registry` mapping those names to factories, as
big_vision looks its modules up by name. Register your own with the
registry's decorator::

  @js.models.register("my_mlp")
  def my_mlp(*, width: int = 64, num_outputs: int = 10):
    return MyMLP(width, num_outputs)

A name of the form ``"package.module:attribute"`` (a colon: registered
names have none) is imported instead, from the working directory first
(as Hydra's ``_target_`` is): ``model: {name: "mynets.cnn:Net", width: 64}``
builds ``Net(width=64)`` from ``mynets/cnn.py`` beside where you run
jaxsweep; the other keys are its arguments, swept like any other.

Examples:
  >>> from jaxsweep.components import registry
  >>> colours = registry.Registry("colour", default="red")
  >>> _ = colours.register("red")(lambda: "#f00")
  >>> colours.get("red")(), colours.names(), "blue" in colours
  ('#f00', ['red'], False)
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
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

  def __init__(self, kind: str, *, slot: str | None = None, default: str | None = None,
               adapt: Callable[[Any], Callable[..., Any]] | None = None):
    """See the class docstring; ``adapt`` turns an imported object into a factory."""
    self.kind = kind
    self.slot = slot or kind
    self.default = default
    self.adapt = adapt
    self._items: dict[str, Callable[..., Any]] = {}
    self._imported: dict[str, Callable[..., Any]] = {}

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
          key=f"{self.slot}.name", fix=f"use one of: {', '.join(self.names())}, or "
                                       "'package.module:Name' for your own")
    if name not in self._items and ":" in name:
      if name not in self._imported:
        obj = import_object(name, key=f"{self.slot}.name", kind=self.kind)
        self._imported[name] = self.adapt(obj) if self.adapt else obj
      return self._imported[name]
    if name not in self._items:
      raise errors.ConfigError(
          f"unknown {self.kind} '{name}'.{errors.did_you_mean(name, self._items)}",
          key=f"{self.slot}.name", fix=f"use one of: {', '.join(self.names())}, or "
                                       f"'package.module:Name' for your own {self.kind}")
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


def import_object(spec: str, *, key: str, kind: str) -> Any:
  """The object ``"package.module:attribute"`` names, importable from the working directory.

  The working directory is searched first (a ``jaxsweep`` console script
  does not have it on ``sys.path``, ``python -m`` does), then the installed
  packages.

  Raises:
    ConfigError: for a malformed name, a module that cannot be imported (or
      raises while importing: its own error is shown), or a missing attribute.
  """
  module_name, _, attr = spec.partition(":")
  example = f"{kind}: {{name: \"mypkg.nets:Net\", ...}}"
  if not module_name or not attr or ":" in attr:
    raise errors.ConfigError(f"'{spec}' is not of the form 'package.module:Name'.", key=key,
                             fix=f"write e.g. {example}")
  cwd = os.getcwd()
  added = cwd not in sys.path and "" not in sys.path
  if added:
    sys.path.insert(0, cwd)
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name and module_name.startswith(e.name):  # The module itself, not one it imports.
      raise errors.ConfigError(
          f"cannot import '{module_name}' for {kind} '{spec}': no module named '{e.name}' "
          f"in the working directory ({cwd}) or the installed packages.", key=key,
          fix=f"run jaxsweep from the folder that holds {e.name.split('.')[0]}/ (or "
              f"{e.name.split('.')[0]}.py), or install it (pip install -e .)") from None
    raise errors.ConfigError(f"importing '{module_name}' for {kind} '{spec}' failed: {e}",
                             key=key, fix="install what it imports") from None
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ConfigError(
        f"importing '{module_name}' for {kind} '{spec}' raised {type(e).__name__}: {e}",
        key=key, fix=f"fix the module (python -c 'import {module_name}' shows the "
                     "traceback)") from None
  finally:
    if added:
      sys.path.remove(cwd)
  obj = module
  for part in attr.split("."):
    if not hasattr(obj, part):
      public = sorted(n for n in dir(module) if not n.startswith("_"))
      raise errors.ConfigError(
          f"module '{module_name}' ({getattr(module, '__file__', '?')}) has no attribute "
          f"'{attr}'.{errors.did_you_mean(part, public)}", key=key,
          fix=f"name one of its attributes: {', '.join(public[:12]) or '(none)'}")
    obj = getattr(obj, part)
  if not callable(obj):
    raise errors.ConfigError(f"'{spec}' is a {type(obj).__name__}, not a class or function.",
                             key=key, fix=f"name a {kind} class or a function that builds one")
  return obj


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
