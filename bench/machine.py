"""The machine a benchmark ran on, for its report."""

import platform
import subprocess


def cpu_model() -> str:
  """The CPU's model name from ``lscpu`` (else ``platform.processor()``)."""
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
  except OSError:
    text = ""
  for line in text.splitlines():
    if line.startswith("Model name:"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown CPU"
