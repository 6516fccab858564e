"""Why a group's program failed to trace: the user's error, named as itself.

:func:`jaxsweep.engine.program.check` traces one variant abstractly before
anything compiles; when the user's model, loss, metric or optimizer raises,
these turn the exception into one :class:`~jaxsweep.errors.ModelError` (or
``ConfigError``) that names the user's file and line and the fix, without
JAX's traceback.
"""

from __future__ import annotations

import contextlib

import jax

from jaxsweep import errors
from jaxsweep.components import optim
from jaxsweep.engine import plan as plan_lib
from jaxsweep.keys import Key


def shape_str(x) -> str:
  leaves = jax.tree.leaves(x)
  if len(leaves) == 1:
    return f"of shape {tuple(leaves[0].shape)} {leaves[0].dtype}"
  return str(jax.tree.map(lambda a: tuple(a.shape), x))


def shapes_differ(out, y) -> bool:
  """Whether outputs and targets have shapes no loss would pair up.

  ``[B, C]`` logits with ``[B]`` labels (and ``[B, T, V]`` with ``[B, T]``)
  fit; so do equal shapes.
  """
  o, t = tuple(getattr(out, "shape", ())), tuple(getattr(y, "shape", ()))
  return o != t and o[:-1] != t


def raised(e: Exception, what: str, key: str) -> errors.ModelError:
  """An exception from the user's loss, metric or model, shown as itself."""
  if isinstance(e, optim.TRACER_ERRORS):
    return errors.ModelError(
        f"the {what} is not traceable by jax.jit: it uses a traced value in Python "
        f"control flow or converts it to a Python/numpy value, {errors.user_frame(e)}"
        f"({type(e).__name__}: {errors.first_line(e)})", key=key,
        fix="use jnp.where / lax.cond instead of if/else on array values, and no "
            "float()/.item()/print of arrays inside the loss")
  return errors.ModelError(
      f"the {what} raised {type(e).__name__}: {errors.first_line(e)}"
      + (f", {errors.user_frame(e).rstrip()}" if errors.user_frame(e) else ""), key=key,
      fix=f"fix the {what} at the line named (it was traced once on one batch, "
          "before training)")


def init_error(plan: plan_lib.Plan, built, hp, data, e: Exception
                ) -> errors.ConfigError:
  """Why a variant failed to initialise: its model, or its optimizer (then
  naming a traced argument the factory uses in Python control flow)."""
  try:
    x = data["train"]["x"]
    init_kw = {k: v for k, v in hp["model"].items() if k in built.model.init_args}
    # The key is made inside the trace: a concrete one would compile (and
    # this runs before anything may).
    variables = jax.eval_shape(
        lambda x: built.model.init(jax.random.key(0), x, **init_kw),
        jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype))
  except Exception:  # pylint: disable=broad-except  # The model's fault: e says it.
    return errors.ModelError(
        f"the model failed to initialise on inputs of shape "
        f"{tuple(built.dataset.train['x'].shape[1:])} per example, "
        f"{errors.user_frame(e)}({type(e).__name__}: {errors.first_line(e)})",
        key="model", fix="fix the model at the line named (it was traced once on one "
                         "example, before training)")
  opt, cause = built.optimizer, f"{errors.user_frame(e)}({type(e).__name__}: " \
                                f"{errors.first_line(e)})"
  names = ()
  if isinstance(opt, optim.Injected) and isinstance(e, optim.TRACER_ERRORS):
    names = optim.untraceable(opt, dict(variables)["params"])
  if not names:
    return errors.ConfigError(
        f"the optimizer failed to initialise, {cause}", key="optimizer",
        fix="fix the optimizer factory at the line named (it was traced once, before "
            "training)")
  name = names[0]
  why = ("it is swept" if Key("optimizer", name) in plan.swept else
         "a float is traced unless marked static, so sweeping it never recompiles")
  factory = getattr(opt.factory, "__name__", "<lambda>")
  factory = "" if factory == "<lambda>" else f" {factory}"
  return errors.ConfigError(
      f"the optimizer factory{factory} cannot take {name} as a traced per-variant value "
      f"({why}): it, or Optax inside it, uses the value in Python control flow, {cause}",
      key=f"optimizer.{name}",
      fix=f"mark it static (static={list(names)}: one compiled program per value), or "
          "use it only in arithmetic: js.optim.schedule(name, learning_rate, ...) and "
          "js.optim.reduce_on_plateau(factor, patience) take traced values, and "
          "lambda count: learning_rate * sched(count) scales an Optax schedule built "
          "from constants")



@contextlib.contextmanager
def training_step_errors():
  try:
    yield
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise raised(e, "training step", "model") from None  # It names the user's line.
