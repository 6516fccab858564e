"""Command-line overrides: Hydra-style ``key=value`` and ``key=v1,v2,...``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from jaxsweep import errors
from jaxsweep.space import domains
from jaxsweep.space import grammar
from jaxsweep.space import nodes
from jaxsweep.space import yaml12


def parse_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any],
                                                       nodes.Sweep | None]:
  """Hydra-style ``key=value`` overrides: fixed settings and a sweep.

  ``key=v`` sets one value; ``key=v1,v2,...`` (commas outside brackets and
  quotes) is a product axis, and so is ``key={log_uniform: [1e-4, 1], num: 4}``
  (a value kind of the sweep grammar, written as in a config's ``sweep:``).
  Each item is read as an int, a float, else YAML (1.2 numbers), so
  ``[64,64]`` is a tuple and ``1e-3`` a float.

  Args:
    overrides: strings such as ``"optimizer.learning_rate=1e-3,1e-2"``.

  Returns:
    ``(fixed, sweep)``: a dict of single settings and the product of the
    swept keys in the given order (None if nothing is swept).

  Raises:
    errors.ConfigError: naming the override and the fix.

  Examples:
    >>> from jaxsweep import space
    >>> fixed_, sweep = space.parse_overrides(["train.steps=100", "lr=1e-3,1e-2"])
    >>> fixed_, space.expand(sweep)
    ({'train.steps': 100}, [{'lr': 0.001}, {'lr': 0.01}])
  """
  if isinstance(overrides, str):
    overrides = [overrides]
  settings: dict[str, Any] = {}
  axes: list[nodes.Sweep] = []
  seen: set[str] = set()
  for text in overrides:
    if not isinstance(text, str):
      raise errors.ConfigError(f"override {text!r} is not a string",
                               key=str(text), fix="write key=value")
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
      raise errors.ConfigError(
          f"override '{text}' is not key=value", key=key or text,
          fix="write key=value (e.g. optimizer.learning_rate=1e-3) or "
              "key=v1,v2 to sweep")
    if not grammar.KEY_RE.fullmatch(key):
      raise errors.ConfigError(
          f"override '{text}': '{key}' is not a dotted config path", key=key,
          fix="write keys like optimizer.learning_rate (Hydra's +key/~key "
              "prefixes are not supported)")
    if key in seen:
      raise errors.ConfigError(f"override '{text}' sets '{key}' again",
                               key=key, fix="give each key once; list "
                                            "several values as key=v1,v2")
    seen.add(key)
    items = _split_top(raw, text)
    if any(not it.strip() for it in items):
      raise errors.ConfigError(
          f"override '{text}' has an empty value", key=key,
          fix=f"write {key}=value, or {key}=v1,v2 to sweep (no empty items)")
    vals = [_parse_item(it, key, text) for it in items]
    if len(vals) == 1 and isinstance(vals[0], Mapping) and any(
        k in domains.KINDS for k in vals[0]):  # key={log_uniform: [1e-4, 1], num: 4}
      axes.append(nodes.Axis(key, domains.check(domains.from_mapping(vals[0], key), key)))
    elif len(vals) == 1:
      settings[key] = domains.normalize(vals[0], key)
    else:
      axes.append(nodes.Axis(
          key, domains.check(domains.Values(tuple(vals)), key)))
  return settings, (nodes.product_of(axes) if axes else None)


def _split_top(text: str, override: str) -> list[str]:
  """Splits on commas outside brackets and quotes."""
  parts, depth, quote, cur = [], 0, None, []
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "[{(":
      depth += 1
    elif ch in "]})":
      depth -= 1
      if depth < 0:
        break
    elif ch == "," and depth == 0:
      parts.append("".join(cur))
      cur = []
      continue
    cur.append(ch)
  if depth != 0 or quote:
    raise errors.ConfigError(
        f"override '{override}' has unbalanced brackets or quotes",
        key=override.partition("=")[0].strip(),
        fix="close every [ { ( and quote, e.g. model.features=[64,64]")
  parts.append("".join(cur))
  return parts


def _parse_item(item: str, key: str, override: str) -> Any:
  item = item.strip()
  for convert in (int, float):
    try:
      return convert(item)
    except ValueError:
      pass
  try:
    return yaml12.load_yaml(item)
  except yaml.YAMLError as e:
    raise errors.ConfigError(
        f"override '{override}': cannot read {item!r} "
        f"({str(e).splitlines()[0]})", key=key,
        fix="quote strings with special characters, e.g. key='a: b'") from None
