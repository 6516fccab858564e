"""YAML with the 1.2 core schema's numbers and booleans, for configs and overrides.

PyYAML follows YAML 1.1, which reads ``1e-3`` as a string, ``yes``/``on`` as
booleans and ``010`` as octal; config files and command-line overrides expect
the YAML 1.2 reading.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Yaml12Loader(yaml.SafeLoader):
  """SafeLoader with YAML 1.2 core scalars: 1e-3 is a float, yes is text."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs
         if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))
_Yaml12Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    _FLOAT_TAG, re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
# YAML 1.2 core has no implicit dates: 2024-01-01 is text, not a datetime.date.
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != _TIMESTAMP_TAG]
    for ch, rs in _Yaml12Loader.yaml_implicit_resolvers.items()}
# YAML 1.1 reads 010 as octal 8; 1.2 core reads it as decimal.
_Yaml12Loader.add_constructor(
    _INT_TAG, lambda loader, node: int(loader.construct_scalar(node)))


# Deeper nesting is refused (no config needs it; recursion would fail later).
MAX_DEPTH = 64
# The most values (nodes) a document may hold once its aliases are expanded:
# an alias bomb (a billion laughs) is refused before it is built or written.
MAX_NODES = 100_000
# Explicit tags of types a config has no place for (a date or bytes would be
# passed to a component, or written back into config.yaml as such).
REFUSED_TAGS = {"tag:yaml.org,2002:timestamp": "a date", "tag:yaml.org,2002:binary": "bytes",
                "tag:yaml.org,2002:set": "a set", "tag:yaml.org,2002:omap": "an ordered map",
                "tag:yaml.org,2002:pairs": "a list of pairs"}


class UnsupportedValueError(yaml.YAMLError):
  """A value of a type a config cannot hold (``!!timestamp``, ``!!binary``...).

  Attributes:
    key: the dotted path of the value (``seed``), or ``""`` at the top.
    line: the 1-based line of the value.
    what: what it is (``a date``).
  """

  def __init__(self, key: str, line: int, what: str, tag: str):
    self.key, self.line, self.what, self.tag = key, line, what, tag
    super().__init__(f"{what} ({tag.rpartition(':')[2] and '!!' + tag.rpartition(':')[2]}) "
                     f"on line {line}: a config holds only numbers, text, true/false, null, "
                     "lists and mappings")


class TooLargeError(yaml.YAMLError):
  """A document whose aliases expand to more than :data:`MAX_NODES` values."""

  def __init__(self, count: int):
    self.count = count
    super().__init__(f"its aliases expand to {count:,} values (at most "
                     f"{MAX_NODES:,}): an alias bomb?")


class DuplicateKeyError(yaml.YAMLError):
  """A mapping gives the same key twice (PyYAML would keep the last silently).

  Attributes:
    key: the dotted path of the key (``optimizer.learning_rate``).
    line: the 1-based line of the repeated key.
    first_line: the 1-based line where the key was first given.
  """

  def __init__(self, key: str, line: int, first_line: int):
    self.key, self.line, self.first_line = key, line, first_line
    super().__init__(f"duplicate key '{key}' on line {line} (first given on line "
                     f"{first_line})")


def load_yaml(text: str) -> Any:
  """``yaml.safe_load`` with YAML 1.2 numbers and booleans, refusing duplicate keys.

  PyYAML follows YAML 1.1, which reads ``1e-3`` as a string and ``yes``/
  ``on`` as booleans; config files and overrides expect the 1.2 reading.

  Raises:
    DuplicateKeyError: for a key given twice in one mapping.
    yaml.YAMLError: for text that is not YAML.

  Examples:
    >>> from jaxsweep import space
    >>> space.load_yaml("{lr: 1e-3, flag: yes, n: 010}")
    {'lr': 0.001, 'flag': 'yes', 'n': 10}
  """
  loader = _Yaml12Loader(text)
  try:
    node = loader.get_single_node()
    if node is None:
      return None
    _check_duplicates(node, (), set())
    count = _expanded_size(node, {})
    if count > MAX_NODES:
      raise TooLargeError(count)
    return loader.construct_document(node)
  except RecursionError:  # PyYAML composes nested nodes recursively.
    raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep") from None
  except (OverflowError, ValueError) as e:  # PyYAML's scanner: e.g. "\U99999999".
    raise yaml.YAMLError(f"unreadable text ({e})") from None
  finally:
    loader.dispose()


def _check_duplicates(node: yaml.Node, path: tuple[str, ...], done: set[int],
                      open_: tuple[int, ...] = ()) -> None:
  """Raises :class:`DuplicateKeyError` for a key repeated in any mapping, and
  a YAMLError for an alias of a node inside itself (a cyclic document) or
  nesting deeper than :data:`MAX_DEPTH`."""
  if len(open_) > MAX_DEPTH:
    raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep (line "
                         f"{node.start_mark.line + 1})")
  if id(node) in open_:
    raise yaml.YAMLError(f"an alias refers to a node inside itself (line "
                         f"{node.start_mark.line + 1}): a config cannot be cyclic")
  if id(node) in done:  # An alias of a node already checked.
    return
  if node.tag in REFUSED_TAGS:
    raise UnsupportedValueError(".".join(path), node.start_mark.line + 1,
                                REFUSED_TAGS[node.tag], node.tag)
  inner = (*open_, id(node))
  if isinstance(node, yaml.MappingNode):
    first: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
      if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
        line = key_node.start_mark.line + 1
        ident = (key_node.tag, key_node.value)  # 1 and "1" are different keys.
        if ident in first:
          raise DuplicateKeyError(".".join((*path, key_node.value)), line, first[ident])
        first[ident] = line
        _check_duplicates(value_node, (*path, key_node.value), done, inner)
      else:
        _check_duplicates(key_node, path, done, inner)
        _check_duplicates(value_node, path, done, inner)
  elif isinstance(node, yaml.SequenceNode):
    for item in node.value:
      _check_duplicates(item, path, done, inner)
  done.add(id(node))


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
  """The number of nodes of the document with every alias written out
  (memoised per node: linear in the document's text, whatever it expands
  to). The document is acyclic and at most :data:`MAX_DEPTH` deep."""
  if id(node) in sizes:
    return sizes[id(node)]
  if isinstance(node, yaml.MappingNode):
    n = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
  elif isinstance(node, yaml.SequenceNode):
    n = 1 + sum(_expanded_size(v, sizes) for v in node.value)
  else:
    n = 1
  sizes[id(node)] = n
  return n
