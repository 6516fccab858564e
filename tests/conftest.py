"""Test setup: 8 virtual CPU devices, asked for before JAX starts.

Sharding tests need several devices; with virtual CPU devices they run on any
machine (as equinox's and big_vision's tests do).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

NUM_DEVICES = 8
jax.config.update("jax_num_cpu_devices", NUM_DEVICES)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def num_devices():
  return NUM_DEVICES

# Measured layouts are cached per machine (jaxsweep.engine.strategy): the
# tests read and write their own cache, never the user's.
# Tests in this process compile without a persistent cache; the ones that
# start jaxsweep in subprocesses share one for the session (SUBPROCESS_ENV),
# so a resumed run finds its programs compiled, as a user's would.
_CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"jaxsweep-test-cache-{os.getppid()}")
os.environ["JAXSWEEP_CACHE_DIR"] = _CACHE
os.environ["JAXSWEEP_COMPILE_CACHE"] = "off"
