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
# YAML 1.1 reads 010 as octal 8; 1.2 core reads it as decimal.
_Yaml12Loader.add_constructor(
    _INT_TAG, lambda loader, node: int(loader.construct_scalar(node)))


def load_yaml(text: str) -> Any:
  """``yaml.safe_load`` with YAML 1.2 numbers and booleans.

  PyYAML follows YAML 1.1, which reads ``1e-3`` as a string and ``yes``/
  ``on`` as booleans; config files and overrides expect the 1.2 reading.

  Examples:
    >>> from jaxsweep import space
    >>> space.load_yaml("{lr: 1e-3, flag: yes, n: 010}")
    {'lr': 0.001, 'flag': 'yes', 'n': 10}
  """
  return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader)
