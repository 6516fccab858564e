"""Every example runs: the docstrings' and every code block of the README and docs/.

Markdown code blocks are run page by page, in order, like a notebook:
``python`` blocks share one namespace per page; ``bash`` blocks run line by
line in a temporary directory that sees the repository's ``configs/``
(``jaxsweep ...`` as ``python -m jaxsweep.cli ...``); ``yaml`` blocks are parsed, and one whose first line
names a file under ``configs/`` must equal that file's settings. ``text``
blocks are output and are not run; a block without a language is an error.

A block that cannot run in a test (it installs, trains for long, or needs
files a user downloads) carries ``<!-- test: skip (why) -->`` on the line
before it. ``SKIPS`` counts them per page, so a new skip is a visible edit
here, never a silent one.
"""

import dataclasses
import doctest
import importlib
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys

import pytest
import yaml

import jaxsweep
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(m.name for m in pkgutil.walk_packages(jaxsweep.__path__, "jaxsweep."))
PAGES = ["README.md", *sorted(os.path.join("docs", f) for f in os.listdir(
    os.path.join(ROOT, "docs")) if f.endswith(".md"))]
LANGUAGES = ("python", "bash", "yaml", "text")
SKIP = re.compile(r"<!-- test: skip \((.+)\) -->")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
# Skipped blocks per page: change a number only with the marker's reason in view.
SKIPS = {
    "README.md": 4,  # Installs, the default sweep (20 s+), the test suite, a long run.
    "docs/guide.md": 1,  # Downloads CIFAR-10.
    "docs/scaling.md": 1,  # Needs several hosts.
    "docs/development.md": 4,  # Installs, runs the test suite (2), builds the site.
    "docs/benchmarks.md": 1,  # Runs the targets harness (minutes).
}


@dataclasses.dataclass(frozen=True)
class Block:
  page: str
  line: int  # 1-based line of the opening fence.
  language: str
  code: str
  skip: str | None  # The reason, for a skipped block.


def blocks(page: str) -> list[Block]:
  """The fenced code blocks of a Markdown page, in order."""
  with open(os.path.join(ROOT, page), encoding="utf-8") as f:
    lines = f.read().split("\n")
  out, i = [], 0
  while i < len(lines):
    m = FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    indent, language, start = m.group(1), m.group(2), i
    i += 1
    body = []
    while not re.match(rf"^{indent}```\s*$", lines[i]):
      body.append(lines[i][len(indent):])
      i += 1
    i += 1
    skip = SKIP.search(lines[start - 1]) if start > 0 else None
    out.append(Block(page, start + 1, language, "\n".join(body) + "\n",
                     skip.group(1) if skip else None))
  return out


def _run_python(block: Block, namespace: dict) -> None:
  code = compile(block.code, f"{block.page}:{block.line}", "exec")
  exec(code, namespace)  # noqa: S102  # The docs' own examples.


def _run_bash(block: Block, tmp_path) -> None:
  if not os.path.exists(tmp_path / "configs"):
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
  for line in block.code.split("\n"):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    argv = shlex.split(line)
    if argv[0] == "jaxsweep":
      argv = [sys.executable, "-m", "jaxsweep.cli", *argv[1:]]
    env = {**os.environ, **helpers.SUBPROCESS_ENV, "PYTHONPATH": ROOT}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"{block.page}:{block.line}: {line}\n{done.stderr[-3000:]}"


def _check_yaml(block: Block) -> None:
  settings = yaml.safe_load(block.code)
  first = block.code.split("\n", 1)[0]
  named = re.match(r"#\s*(configs/\S+\.yaml)", first)
  if named:
    with open(os.path.join(ROOT, named.group(1)), encoding="utf-8") as f:
      assert settings == yaml.safe_load(f), f"{block.page}:{block.line} differs from the file"


def test_pages_are_found():
  assert "README.md" in PAGES and os.path.join("docs", "guide.md") in PAGES


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page, tmp_path, monkeypatch):
  found = blocks(page)
  for b in found:
    assert b.language in LANGUAGES, f"{page}:{b.line}: a code block needs one of {LANGUAGES}"
  skipped = [b for b in found if b.skip]
  assert len(skipped) == SKIPS.get(page, 0), (
      f"{page} skips {len(skipped)} blocks, SKIPS says {SKIPS.get(page, 0)}: "
      + "; ".join(f"line {b.line}: {b.skip}" for b in skipped))
  monkeypatch.chdir(tmp_path)  # Whatever a snippet writes lands here.
  namespace: dict = {"__name__": f"docs_{os.path.basename(page)}"}
  attempted = 0
  for b in found:
    if b.skip or b.language == "text":
      continue
    attempted += 1
    if b.language == "python":
      _run_python(b, namespace)
    elif b.language == "bash":
      _run_bash(b, tmp_path)
    else:
      _check_yaml(b)
  runnable = [b for b in found if not b.skip and b.language != "text"]
  assert attempted == len(runnable)


def test_every_page_runs_something():
  """Skips cannot hollow the docs out: most blocks run."""
  every = [b for p in PAGES for b in blocks(p) if b.language != "text"]
  run = [b for b in every if not b.skip]
  assert len(run) > 0 and len(run) >= len(every) // 2, (len(run), len(every))


def test_skip_marker_is_parsed():
  assert SKIP.search("<!-- test: skip (trains 20 s) -->").group(1) == "trains 20 s"


def test_modules_are_found():
  assert {"jaxsweep.api", "jaxsweep.engine.train", "jaxsweep.space.grammar",
          "jaxsweep.report.tables"} <= set(MODULES)


@pytest.mark.parametrize("name", ["jaxsweep", *MODULES])
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  if ">>> " in inspect.getsource(module):
    assert result.attempted > 0, f"{name} has examples that doctest does not find"
  assert result.failed == 0
