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
