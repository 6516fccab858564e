"""The measured programs of bench/throughput.py, one per process.

  python bench/throughput_workers.py '{"kind": "sequential", ...}'

Each prints one line ``@@RESULT {json}``. A job's ``ready`` is ``time.time()``
when its results were in hand: the parent subtracts the time it spawned the
process, so a wall time includes the interpreter's start, imports, data,
compilation, training and evaluation. JAX is imported inside the functions,
after a child has pinned itself to a core or chosen its device count.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

BATCH = 128
LR_RANGE = (1e-4, 1e-1)
IN_FEATURES, CLASSES = 64, 10
# Per-variant methods time this many variants in their steady-state pass
# (at least 2 per worker): their per-variant cost does not depend on N.
STEADY_VARIANTS = 16
# Steady-state passes per job: the fastest counts (on a shared 2-core machine
# one pass of the same compiled program ranged 1,583-2,481 variant-steps/s).
STEADY_REPEATS = 3


def flops_per_step(width: int, batch: int = BATCH) -> int:
  """Matmul FLOPs of one training step of the 64-W-W-10 MLP.

  With layer sizes d0..d3 = 64, W, W, 10 and M = sum_i d_i * d_(i+1) the
  multiply-adds of one example's forward pass:
    forward           2 * B * M
    weight gradients  2 * B * M
    input gradients   2 * B * (M - d0 * d1)   (none for the input layer)
  total = 2 * B * (3 * M - d0 * d1), i.e. just under 3x the forward's 2*B*M.
  Bias adds, activations, softmax and the Adam update (O(params)) are left
  out: under 2 % of the total for these sizes.
  """
  dims = (IN_FEATURES, width, width, CLASSES)
  macs = sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
  return 2 * batch * (3 * macs - dims[0] * dims[1])


def learning_rates(n: int) -> list[float]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return [float(v) for v in np.geomspace(*LR_RANGE, n)]


# ==========================================================================
# The children.

def _pin(core):
  if core is not None:
    os.sched_setaffinity(0, {int(core)})


def _emit(obj):
  print("@@RESULT " + json.dumps(obj), flush=True)


def child_peak(spec):
  """GFLOP/s of a jitted n x n f32 matmul (median of ``reps``)."""
  _pin(spec.get("pin"))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = spec["n"]
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  for _ in range(2):
    dot(a, b).block_until_ready()
  times = []
  for _ in range(spec["reps"]):
    t0 = time.perf_counter()
    dot(a, b).block_until_ready()
    times.append(time.perf_counter() - t0)
  flops = 2 * n ** 3
  return {"n": n, "pin": spec.get("pin"), "median_s": statistics.median(times),
          "gflops": flops / statistics.median(times) / 1e9,
          "best_gflops": flops / min(times) / 1e9}


def child_jaxsweep(spec):
  """The engine's path: make_plan + execute, then a steady-state pass."""
  t_start = time.time()
  from jaxsweep.engine import sharding  # pylint: disable=g-import-not-at-top
  sharding.configure_cpu_devices(spec["devices"])
  import jax  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import execute as execute_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import population as population_lib  # pylint: disable=g-import-not-at-top
  from jaxsweep.engine import program as program_lib  # pylint: disable=g-import-not-at-top
  t_imported = time.time()
  width, steps = spec["width"], spec["steps"]
  out = []
  for job in spec["jobs"]:
    t_job = time.time()
    lrs, lanes = job["lrs"], job["lanes"]
    plan = js.engine.make_plan(
        js.config.registry_components(),
        {"data.name": "digits", "model.name": "mlp", "model.features": (width, width),
         "optimizer.name": "adam", "train.steps": steps, "train.batch_size": BATCH,
         "train.eval_every": steps, "seed": 0},
        [{"optimizer.learning_rate": lr, "seed": i} for i, lr in enumerate(lrs)])
    res = execute_lib.execute(plan, lanes=lanes)
    info = res.groups[0]
    accs = [r["test_accuracy"] for r in res.rows if r.get("test_accuracy") is not None]
    ready = time.time()
    row = {"devices": jax.device_count(), "lanes": info["lanes"],
           "slots": info["chunk_size"], "padding": info["padding"],
           "num_chunks": info.get("num_chunks"), "compile_s": info["compile_seconds"],
           "sweep_train_s": info["train_seconds"], "job_start": t_job, "ready": ready,
           "max_test_accuracy": max(accs) if accs else None}
    if spec.get("steady", True):
      # The compiled period program again, on a fresh population: the same
      # cached executable (no compilation), timed with the stats on the host.
      group = plan.groups[0]
      built = program_lib.build(plan, group)
      mesh = sharding.make_mesh()
      data = program_lib.device_data(built.dataset, mesh)
      compiled_before = sum(c.seconds for c in built.compiled.values())

      def compile_for(size, built=built, group=group, data=data, mesh=mesh, lanes=lanes,
                      plan=plan):
        return program_lib.compile(
            built, mesh, program_lib.abstract_population(plan, group, size, mesh), data,
            lanes=lanes)

      def fresh(plan=plan, group=group, built=built, mesh=mesh, lanes=lanes, data=data,
                compile_for=compile_for, size=info["chunk_size"]):
        pop = population_lib.Population(plan, group, built, mesh, lanes, data, compile_for)
        pop.start(list(group.members), size)
        jax.block_until_ready([c.state for c in pop.chunks])  # Init is not timed.
        return pop

      pop = fresh()
      evals = []
      for _ in range(2):  # Warm-up, and the evaluation's own cost (the faster of two).
        t0 = time.perf_counter()
        pop.run(steps=0)
        evals.append(time.perf_counter() - t0)
      eval_s = min(evals)
      periods = []
      for _ in range(spec.get("steady_repeats", STEADY_REPEATS)):
        pop = fresh()  # The period trains every step once: a fresh population each pass.
        t0 = time.perf_counter()
        pop.run(steps=steps)
        periods.append(time.perf_counter() - t0)
      period_s = min(periods)
      # Training alone: the period less its evaluation, unless timing noise
      # makes that implausible (tiny --quick runs): then the whole period.
      subtract = period_s - eval_s >= 0.5 * period_s
      train_s = period_s - eval_s if subtract else period_s
      row.update({"steady_period_s": period_s, "steady_periods_s": periods,
                  "steady_eval_s": eval_s,
                  "steady_train_s": train_s, "eval_subtracted": subtract,
                  "steady_vsps": len(lrs) * steps / train_s,
                  "recompiled_s": sum(c.seconds for c in built.compiled.values())
                                  - compiled_before})
    out.append(row)
  return {"start": t_start, "imported": t_imported, "jobs": out}


_CAREFUL = {}


def careful_trial(init, apply, steps: int, batch: int):
  """The careful per-trial program a user writes (the Optuna objective here,
  the plain program of ``compile_cost.py``): ``train(lr, seed, x, y, x_test,
  y_test) -> (last batch loss, test accuracy)``, one jitted function: init,
  a ``lax.scan`` of ``steps`` Adam steps on batches of ``batch`` drawn with
  replacement, one evaluation; the learning rate and seed traced, so one
  program serves every trial.

  Args:
    init: ``init(key, x) -> params``.
    apply: ``apply(params, x, train) -> logits``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  def train(lr, seed, x, y, x_test, y_test):
    k_init, k_data = jax.random.split(jax.random.key(seed))
    params = init(k_init, x[:1])
    tx = optax.adam(lr)  # lr is traced: one program for every learning rate.
    opt_state = tx.init(params)

    def step(carry, key):
      params, opt_state = carry
      idx = jax.random.randint(key, (batch,), 0, x.shape[0])

      def loss_fn(p):
        logits = apply(p, x[idx], True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt_state),
                                       jax.random.split(k_data, steps))
    acc = jnp.mean(apply(params, x_test, False).argmax(-1) == y_test)
    return losses[-1], acc

  return train


def _careful(width: int, steps: int):
  """The careful per-variant program: (compiled fn, data args), compile seconds
  (0 when a previous job of this process compiled it: batched --quick jobs)."""
  if (width, steps) in _CAREFUL:
    return _CAREFUL[width, steps][:2] + (0.0,)
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top

  ds = js.data.load("digits")
  data = tuple(jnp.asarray(a) for a in (ds.train["x"], ds.train["y"],
                                        ds.test["x"], ds.test["y"]))

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      for _ in range(2):
        x = nn.relu(nn.Dense(width)(x))
      return nn.Dense(CLASSES)(x)

  model = MLP()

  train = careful_trial(lambda key, x: model.init(key, x)["params"],
                        lambda params, x, train: model.apply({"params": params}, x),
                        steps, BATCH)

  t0 = time.perf_counter()
  compiled = jax.jit(train).lower(jnp.float32(1e-3), jnp.uint32(0), *data).compile()
  _CAREFUL[width, steps] = (compiled, data, time.perf_counter() - t0)
  return _CAREFUL[width, steps]


def _per_variant_child(spec, runner, workers=1):
  """A per-variant method: ``runner(width, steps) -> (run, compile_s)`` where
  ``run(pairs)`` trains the (learning rate, seed) pairs and returns their test
  accuracies. Each job: the sweep, then (``steady``) a timed second pass."""
  t_start = time.time()
  _pin(spec.get("pin"))
  t_imported = time.time()
  out = []
  for job in spec["jobs"]:
    t_job = time.time()
    run, compile_s = runner(spec["width"], spec["steps"])
    pairs = list(zip(job["lrs"], job["seeds"], strict=True))
    t0 = time.perf_counter()
    accs = run(pairs)
    sweep_s = time.perf_counter() - t0
    row = {"compile_s": compile_s, "sweep_train_s": sweep_s, "job_start": t_job,
           "ready": time.time(), "max_test_accuracy": max(accs) if accs else None,
           "variants": len(pairs)}
    if spec.get("steady", True) and pairs:
      m = max(2 * workers, min(len(pairs), STEADY_VARIANTS))
      passes = []
      for _ in range(spec.get("steady_repeats", STEADY_REPEATS)):
        t0 = time.perf_counter()
        run([pairs[i % len(pairs)] for i in range(m)])
        passes.append(time.perf_counter() - t0)
      row["steady_train_s"], row["steady_passes_s"] = min(passes), passes
      row["steady_vsps"] = m * spec["steps"] / row["steady_train_s"]
    out.append(row)
  return {"start": t_start, "imported": t_imported, "jobs": out}


def _sequential_runner(width, steps):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  fn, data, compile_s = _careful(width, steps)

  def run(pairs):
    accs = []
    for lr, seed in pairs:
      _, acc = fn(jnp.float32(lr), jnp.uint32(seed), *data)
      accs.append(float(acc))  # On the host: the variant is done.
    return accs

  return run, compile_s


def child_sequential(spec):
  """The careful script: one compiled scan per variant, in a Python loop."""
  return _per_variant_child(spec, _sequential_runner)


def _naive_runner(width, steps):
  """The tutorial loop: a jitted step called from Python every step."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  import jaxsweep as js  # pylint: disable=g-import-not-at-top
  ds = js.data.load("digits")
  x, y = np.asarray(ds.train["x"]), np.asarray(ds.train["y"])
  x_test, y_test = jnp.asarray(ds.test["x"]), jnp.asarray(ds.test["y"])

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      for _ in range(2):
        x = nn.relu(nn.Dense(width)(x))
      return nn.Dense(CLASSES)(x)

  model = MLP()
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

  @jax.jit
  def step(params, opt_state, xb, yb):
    def loss_fn(p):
      logits = model.apply({"params": p}, xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def accuracy(params):
    return jnp.mean(model.apply({"params": params}, x_test).argmax(-1) == y_test)

  rng = np.random.default_rng(0)

  def run(pairs):
    accs = []
    for lr, seed in pairs:
      params = model.init(jax.random.key(seed), x[:1])["params"]
      opt_state = tx.init(params)
      opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
      for _ in range(steps):
        idx = rng.integers(0, len(x), BATCH)
        params, opt_state, _ = step(params, opt_state, x[idx], y[idx])
      accs.append(float(accuracy(params)))
    return accs

  p0 = model.init(jax.random.key(0), x[:1])["params"]
  t0 = time.perf_counter()  # jit compiles at the first call.
  jax.block_until_ready(step(p0, tx.init(p0), x[:BATCH], y[:BATCH]))
  jax.block_until_ready(accuracy(p0))
  return run, time.perf_counter() - t0


def child_naive(spec):
  return _per_variant_child(spec, _naive_runner)


def child_optuna(spec):
  """The careful objective in Optuna, n_jobs threads, the exact rates enqueued."""
  import optuna  # pylint: disable=g-import-not-at-top
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  n_jobs = spec["n_jobs"]

  def runner(width, steps):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    fn, data, compile_s = _careful(width, steps)

    def objective(trial):
      lr = trial.suggest_float("learning_rate", LR_RANGE[0], LR_RANGE[1], log=True)
      seed = trial.suggest_int("seed", 0, 2**31 - 1)
      _, acc = fn(jnp.float32(lr), jnp.uint32(seed), *data)
      return float(acc)

    def run(pairs):
      study = optuna.create_study(direction="maximize",
                                  sampler=optuna.samplers.RandomSampler(seed=0))
      for lr, seed in pairs:  # Enqueued: Optuna trains exactly these variants.
        study.enqueue_trial({"learning_rate": lr, "seed": seed})
      study.optimize(objective, n_trials=len(pairs), n_jobs=n_jobs)
      done = sorted((t.params["learning_rate"], t.params["seed"], t.value)
                    for t in study.trials if t.value is not None)
      if [d[:2] for d in done] != sorted(pairs):
        raise RuntimeError("Optuna did not train the enqueued variants")
      return [d[2] for d in done]

    return run, compile_s

  return _per_variant_child(spec, runner, workers=n_jobs)


def child_multi(spec):
  """Several per-variant children in one process (``--quick`` only: they share
  the imports and the careful program's compilation)."""
  return {"parts": [CHILDREN[part.pop("kind")](part) for part in spec["parts"]]}


CHILDREN = {"peak": child_peak, "jaxsweep": child_jaxsweep, "sequential": child_sequential,
            "naive": child_naive, "optuna": child_optuna, "multi": child_multi}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  spec = json.loads(argv[0])
  _emit(CHILDREN[spec.pop("kind")](spec))
  return 0


if __name__ == "__main__":
  sys.exit(main())
