"""Text classification from your own files, with a tokenizer that needs no download.

``data: {name: text_classification, path: reviews.csv}`` reads one of:

* a CSV (``.csv``; ``.tsv`` is tab-separated) with a header naming the
  ``text`` and ``label`` columns (``text_field`` / ``label_field`` rename
  them);
* a JSONL file (``.jsonl``, ``.ndjson`` or ``.json``: one JSON object per
  line) with ``text`` and ``label`` fields;
* a folder with one subfolder per class, each holding ``.txt`` files (one
  example a file, the subfolder's name its label).

Labels are mapped to ``0..K-1`` in sorted order (numerically when every
label is a whole number), recorded in ``info["labels"]``. The test split is
a separate file (``test_path``, same formats) or ``test_fraction`` of the
examples held out (stratified, seeded); ``val_fraction`` of the rest is the
validation split. The tokenizer (``word`` or ``char``) lowercases (unless
``lowercase: false``); ``word`` splits on anything not a letter or a digit.
The vocabulary is built on the *training* split only: id 0 is padding, id 1
stands for any unknown token, then the most frequent tokens (ties in
alphabetical order), at most ``vocab_size`` ids in all. Each example is the
ids of its first ``max_length`` tokens, padded with 0: int32 ``[N, T]``.

Examples:
  >>> from jaxsweep.components.data import textcls
  >>> textcls.tokenize("Don't stop: 42 reasons!", "word")
  ['don', 't', 'stop', '42', 'reasons']
  >>> vocab = textcls.build_vocab([["b", "a", "b"], ["c"]], vocab_size=4)
  >>> vocab
  ['<pad>', '<unk>', 'b', 'a']
  >>> textcls.encode([["a", "c"], ["b", "b", "b"]], vocab, max_length=2).tolist()
  [[3, 1], [2, 2]]
"""

from __future__ import annotations

import collections
import csv
import json
import os
import re

import numpy as np

from jaxsweep import errors
from jaxsweep.components.data import dataset
from jaxsweep.components.data.dataset import Dataset

PAD_ID, UNKNOWN_ID = 0, 1
RESERVED = ("<pad>", "<unk>")
TOKENIZERS = ("word", "char")
EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".json": "jsonl"}
_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str, tokenizer: str = "word", lowercase: bool = True) -> list[str]:
  """Splits a text into tokens: words (letters and digits) or characters."""
  if lowercase:
    text = text.lower()
  return _WORD.findall(text) if tokenizer == "word" else list(text)


def build_vocab(token_lists, vocab_size: int) -> list[str]:
  """``["<pad>", "<unk>", most frequent tokens...]``, at most ``vocab_size`` long."""
  counts = collections.Counter(t for tokens in token_lists for t in tokens)
  ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return list(RESERVED) + [t for t, _ in ordered[:max(vocab_size - len(RESERVED), 0)]]


def encode(token_lists, vocab, max_length: int) -> np.ndarray:
  """Token ids int32 ``[N, max_length]``: the first tokens, unknown ones 1, padding 0."""
  lookup = {t: i for i, t in enumerate(vocab)}
  out = np.full((len(token_lists), max_length), PAD_ID, np.int32)
  for i, tokens in enumerate(token_lists):
    ids = [lookup.get(t, UNKNOWN_ID) for t in tokens[:max_length]]
    out[i, :len(ids)] = ids
  return out


def encode_texts(texts, info) -> np.ndarray:
  """New texts as a :func:`text_classification` dataset's model inputs.

  Args:
    texts: strings.
    info: the dataset's ``info`` (its vocabulary and tokenizer settings).
  """
  return encode([tokenize(t, info["tokenizer"], info["lowercase"]) for t in texts],
                info["vocab"], info["max_length"])


# --------------------------------------------------------------------------
# Reading the files.

def _error(path: str, where: str, what: str, fix: str, key: str) -> errors.ConfigError:
  return errors.ConfigError(f"{path}{where}: {what}", key=key, fix=fix)


def _label(value, path: str, where: str, key: str) -> str:
  if isinstance(value, bool) or not isinstance(value, (str, int)) or (
      isinstance(value, str) and not value.strip()):
    raise _error(path, where, f"the label is {value!r}, not a name or an integer.",
                 "give every example a label (a string or an integer)", key)
  return str(value).strip()


def _read_csv(path, text_field, label_field, key):
  delimiter = "\t" if path.endswith(".tsv") else ","
  out = []
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.DictReader(f, delimiter=delimiter)
      columns = reader.fieldnames or []
      missing = [c for c in (text_field, label_field) if c not in columns]
      if missing:
        raise _error(path, "", f"no column {' or '.join(repr(c) for c in missing)} (the "
                     f"header has: {', '.join(map(repr, columns)) or 'nothing'}).",
                     "name the columns in the header's first line, or set data.text_field "
                     "and data.label_field", key)
      for row in reader:
        where = f" line {reader.line_num}"
        if row[text_field] is None or row[label_field] is None:
          raise _error(path, where, "the row has fewer fields than the header.",
                       "quote texts that hold the delimiter", key)
        out.append((row[text_field], _label(row[label_field], path, where, key)))
  except UnicodeDecodeError as e:
    raise _error(path, "", f"not UTF-8 text ({e.reason} at byte {e.start}).",
                 "save the file as UTF-8", key) from None
  except csv.Error as e:
    raise _error(path, "", f"not a valid CSV file: {e}", "check the quoting", key) from None
  return out


def _read_jsonl(path, text_field, label_field, key):
  out = []
  try:
    with open(path, encoding="utf-8-sig") as f:
      for line_no, line in enumerate(f, 1):
        if not line.strip():
          continue
        where = f" line {line_no}"
        try:
          obj = json.loads(line)
        except json.JSONDecodeError as e:
          raise _error(path, where, f"not JSON ({e.msg}).",
                       "write one JSON object per line", key) from None
        if not isinstance(obj, dict):
          raise _error(path, where, f"holds a {type(obj).__name__}, not an object.",
                       f'write one object per line, e.g. {{"{text_field}": "...", '
                       f'"{label_field}": "..."}}', key)
        missing = [c for c in (text_field, label_field) if c not in obj]
        if missing:
          raise _error(path, where, f"no field {' or '.join(repr(c) for c in missing)} "
                       f"(it has: {', '.join(map(repr, obj)) or 'nothing'}).",
                       "give every line both fields, or set data.text_field and "
                       "data.label_field", key)
        if not isinstance(obj[text_field], str):
          raise _error(path, where, f"the text is {type(obj[text_field]).__name__}, not a "
                       "string.", "write the text as a JSON string", key)
        out.append((obj[text_field], _label(obj[label_field], path, where, key)))
  except UnicodeDecodeError as e:
    raise _error(path, "", f"not UTF-8 text ({e.reason} at byte {e.start}).",
                 "save the file as UTF-8", key) from None
  return out


def _read_folder(path, key):
  classes = sorted(d for d in os.listdir(path)
                   if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
  if not classes:
    raise _error(path, "", "has no class subfolders.",
                 "put each class's .txt files in a subfolder named after the class", key)
  out = []
  for c in classes:
    folder = os.path.join(path, c)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".txt"))
    if not files:
      raise _error(folder, "", "holds no .txt files.",
                   "give every class at least one example, or remove the folder", key)
    for name in files:
      file = os.path.join(folder, name)
      try:
        with open(file, encoding="utf-8") as f:
          out.append((f.read(), c))
      except UnicodeDecodeError as e:
        raise _error(file, "", f"not UTF-8 text ({e.reason} at byte {e.start}).",
                     "save the file as UTF-8", key) from None
  return out


def read_examples(path: str, *, text_field: str = "text", label_field: str = "label",
                  key: str = "data.path") -> list[tuple[str, str]]:
  """``[(text, label)]`` from a CSV, a JSONL file or a folder per class.

  Raises:
    ConfigError: naming the file (and line) for a missing file or column, a
      line that is not JSON, a missing label, or text that is not UTF-8.
  """
  if not path:
    raise errors.ConfigError("the text_classification dataset needs a path.", key=key,
                             fix="set data.path to a .csv or .jsonl file, or a folder "
                                 "with one subfolder of .txt files per class")
  path = os.path.expanduser(str(path))
  if os.path.isdir(path):
    out = _read_folder(path, key)
  elif not os.path.isfile(path):
    raise errors.ConfigError(
        f"{os.path.abspath(path)} does not exist.", key=key,
        fix="point it at a .csv or .jsonl file, or a folder with one subfolder of .txt "
            "files per class (relative paths start at the current directory)")
  else:
    fmt = EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
      raise errors.ConfigError(
          f"cannot tell the format of {path} from its name.", key=key,
          fix=f"name it with one of: {', '.join(EXTENSIONS)}")
    reader = _read_csv if fmt == "csv" else _read_jsonl
    out = reader(path, text_field, label_field, key)
  if not out:
    raise errors.ConfigError(f"{path} holds no examples.", key=key,
                             fix="give at least one example per class")
  return out


def _sorted_labels(labels) -> list[str]:
  unique = set(labels)
  if all(re.fullmatch(r"-?\d+", s) for s in unique):
    return sorted(unique, key=int)
  return sorted(unique)


def _positive(value, name: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise errors.ConfigError(f"must be a whole number >= {minimum}, got {value!r}.",
                             key=f"data.{name}")
  return int(value)


@dataset.REGISTRY.register("text_classification")
def text_classification(*, path: str | None = None, test_path: str | None = None,
                        text_field: str = "text", label_field: str = "label",
                        tokenizer: str = "word", vocab_size: int = 20000,
                        max_length: int = 64, lowercase: bool = True,
                        test_fraction: float = 0.2, val_fraction: float = dataset.VAL_FRACTION,
                        seed: int = 0) -> Dataset:
  """Labelled texts from a CSV, JSONL or folder per class, tokenized (no download).

  Args:
    path: the examples (see the module docstring for the formats).
    test_path: a separate file (or folder) of test examples; without it
      ``test_fraction`` of ``path``'s examples are the test split.
    text_field, label_field: the CSV columns / JSON fields.
    tokenizer: ``word`` or ``char``.
    vocab_size: at most this many token ids, the 2 reserved ones included.
    max_length: tokens kept per example (the first ones), padded with id 0.
    lowercase: lowercase before tokenizing.
    test_fraction: share held out for test when there is no ``test_path``
      (stratified by label, seeded).
    val_fraction: share of the training examples held out for validation.
    seed: the seed of both draws.

  Returns:
    A classification Dataset with int32 inputs ``[N, max_length]``;
    ``info["labels"]`` (``labels[i]`` is class i), ``info["vocab"]``
    (``vocab[i]`` is token i), ``info["vocab_size"]`` and
    ``info["model_args"] = {"vocab_size": ...}`` (filled into the model's
    ``vocab_size`` when not set).
  """
  if tokenizer not in TOKENIZERS:
    raise errors.unknown_key("data.tokenizer", TOKENIZERS, what="tokenizer",
                             name=str(tokenizer))
  vocab_size = _positive(vocab_size, "vocab_size", len(RESERVED) + 1)
  max_length = _positive(max_length, "max_length")
  examples = read_examples(path, text_field=text_field, label_field=label_field)
  classes = _sorted_labels([label for _, label in examples])
  index = {c: i for i, c in enumerate(classes)}
  texts = [t for t, _ in examples]
  y = np.array([index[label] for _, label in examples], np.int32)
  everything = {"x": np.arange(len(texts)), "y": y}
  if test_path:
    test_examples = read_examples(test_path, text_field=text_field, label_field=label_field,
                                  key="data.test_path")
    unseen = sorted({label for _, label in test_examples} - set(classes))
    if unseen:
      raise errors.ConfigError(
          f"{test_path} has label(s) {', '.join(map(repr, unseen[:5]))} that {path} does "
          f"not (its labels: {', '.join(map(repr, classes[:10]))}).", key="data.test_path",
          fix="use the same label names in both files")
    train = everything
    test_texts = [t for t, _ in test_examples]
    y_test = np.array([index[label] for _, label in test_examples], np.int32)
  else:
    train, test = dataset.hold_out(everything, test_fraction, seed=seed, stratify=True,
                                   key="data.test_fraction")
    if test is None:
      raise errors.ConfigError("test_fraction 0 leaves no test split.",
                               key="data.test_fraction",
                               fix="use e.g. test_fraction: 0.2, or give a test_path")
    test_texts, y_test = [texts[i] for i in test["x"]], test["y"]
  train, val = dataset.hold_out(train, val_fraction, seed=seed, stratify=True)
  train_tokens = [tokenize(texts[i], tokenizer, lowercase) for i in train["x"]]
  vocab = build_vocab(train_tokens, vocab_size)

  def split(token_lists, labels):
    return {"x": encode(token_lists, vocab, max_length), "y": np.asarray(labels, np.int32)}

  def tokens_of(ts):
    return [tokenize(t, tokenizer, lowercase) for t in ts]

  test_tokens = tokens_of(test_texts)
  info = {"labels": classes, "vocab": vocab, "vocab_size": len(vocab),
          "tokenizer": tokenizer, "lowercase": bool(lowercase), "max_length": max_length,
          "pad_id": PAD_ID, "unknown_id": UNKNOWN_ID,
          "model_args": {"vocab_size": len(vocab)},
          "truncated_train": int(sum(len(t) > max_length for t in train_tokens)),
          "source": os.path.abspath(os.path.expanduser(str(path)))}
  return Dataset(
      train=split(train_tokens, train["y"]),
      val=None if val is None else split(tokens_of(texts[i] for i in val["x"]), val["y"]),
      test=split(test_tokens, y_test), task="classification", num_classes=len(classes),
      name=os.path.basename(os.path.normpath(str(path))), info=info)
