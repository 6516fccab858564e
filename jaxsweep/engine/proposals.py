"""Batched Bayesian proposals: Optuna proposes, the population trains them at once.

A round asks an Optuna study for ``batch`` trials, trains them as ONE
population (grouped by structural values as any sweep, through
:func:`jaxsweep.engine.plan.make_plan` and
:func:`jaxsweep.engine.execute.execute`), reports every trial's validation
target at each period boundary (``trial.report``: the study's pruner may
stop it there, told ``PRUNED``) and tells the study the final value
(``study.tell``). ``ceil(samples / batch)`` rounds; each round's proposals
know every earlier round's results::

  for round in range(ceil(samples / batch)):
    trials = [study.ask(space) for _ in range(batch)]   # TPE, GP or QMC
    train them as one population; at each boundary: report, maybe prune
    study.tell(trial, final value) for each

With ``budget`` (variant-steps: training steps summed over every trial and
seed) a round asks only for the trials the budget left can train to the
end: the search never spends more, and pruned trials leave room for more.

Samplers: ``tpe`` (``optuna.samplers.TPESampler``, with the constant liar so
the trials of one batch spread out), ``gp`` (``GPSampler``, needs torch),
``qmc`` (scrambled Sobol, ``QMCSampler``); pruners: ``median``
(``MedianPruner``, the default) or ``none``. With ``storage``
(``sqlite:///study.db``) the study is visible in optuna-dashboard, and a
later run with the same ``study`` name goes on with it (its sampler sees
every earlier trial).

Seeds: a trial is a configuration. Where seeds are swept, each trial trains
every seed (one row, one variant per seed, the same ``trial`` number), its
reported and told values are the mean over its seeds that did not diverge;
a pruned trial stops all its seeds. A trial whose every seed diverged (or
whose value is not finite) is told ``FAIL``, as Optuna does for an
objective that returns NaN: the sampler leaves it out.

Optuna is optional: ``pip install jaxsweep[search]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxsweep import errors
from jaxsweep import keys
from jaxsweep import results as results_lib
from jaxsweep import selection
from jaxsweep.engine import checkpoint as ckpt_lib
from jaxsweep.engine import execute
from jaxsweep.engine import fingerprint as fingerprint_lib
from jaxsweep.engine import plan as plan_lib
from jaxsweep.engine import program as program_lib
from jaxsweep.engine import schedulers
from jaxsweep.engine import scheduling
from jaxsweep.engine import search_space as search_space_lib
from jaxsweep.engine import structure
from jaxsweep.space import domains

METHODS = ("tpe", "gp", "qmc")
PRUNERS = ("median", "none")
OPTIONS = ("samples", "budget", "batch", "seed", "storage", "study", "pruner")
# The default batch: about four rounds (the sampler learns from three), at
# least MIN_BATCH trials per population, at most MAX_BATCH.
MIN_BATCH, MAX_BATCH, ROUNDS = 8, 32, 4
_INSTALL = "pip install 'jaxsweep[search]' (or pip install optuna)"


def method_name(method: Any) -> str | None:
  """The proposal method's name (``tpe``, ``gp``, ``qmc``), or None for any other."""
  name = method.get("name") if isinstance(method, Mapping) else method
  return name if isinstance(name, str) and name in METHODS else None


@dataclasses.dataclass(frozen=True)
class Options:
  """A proposal search's options (``method: {name: tpe, ...}``).

  Attributes:
    name: ``tpe``, ``gp`` or ``qmc``.
    samples: trials in all (at most; None: as many as ``budget`` allows).
    batch: trials per round (one population); None: :func:`default_batch`
      of the trials the budget allows.
    seed: the sampler's seed.
    storage: an Optuna storage URL (``sqlite:///study.db``), or None (memory).
    study: the study's name, or an ``optuna.Study`` used as it is.
    pruner: ``median`` or ``none``.
    budget: the most variant-steps (training steps summed over every trial
      and seed) the search spends, or None. A round asks only for the trials
      the budget left can train to the end, so the search never spends more
      (pruned trials leave room for more trials).
  """

  name: str
  samples: int | None
  batch: int | None
  seed: int = 0
  storage: str | None = None
  study: Any = None
  pruner: str = "median"
  budget: int | None = None

  @property
  def rounds(self) -> int | None:
    """Rounds without a budget (with one, they depend on what is pruned)."""
    if self.samples is None or self.batch is None or self.budget is not None:
      return None
    return math.ceil(self.samples / self.batch)


def default_batch(samples: int) -> int:
  """Trials per round by default: ``ceil(samples / 4)`` within ``[8, 32]``, at
  most ``samples``.

  About four rounds lets the sampler learn from three; fewer than 8 trials
  leave a population (and the machine) mostly idle while the round's fixed
  costs (start, step-0 evaluation) stay; beyond 32, proposals made without
  feedback spread the budget like random search.

  Examples:
    >>> [default_batch(n) for n in (5, 20, 64, 100, 1000)]
    [5, 8, 16, 25, 32]
  """
  return min(samples, MAX_BATCH, max(MIN_BATCH, math.ceil(samples / ROUNDS)))


def options(method: Any) -> Options:
  """The checked options of ``method`` (a name or ``{name: tpe, ...}``).

  Raises:
    ConfigError: for a missing ``samples``, an unknown option or a bad value.
  """
  opts = dict(method) if isinstance(method, Mapping) else {"name": method}
  name = opts.pop("name", None)
  if method_name(name) is None:
    raise errors.unknown_key("sweep.method", METHODS, what="proposal method", name=str(name))
  for k in opts:
    if k not in OPTIONS:
      raise errors.unknown_key(f"sweep.method.{k}", [f"sweep.method.{o}" for o in OPTIONS],
                               what=f"{name} option")
  if "samples" not in opts and "budget" not in opts:
    raise errors.ConfigError(
        f"method {name} needs samples: (the number of trials) or budget: (variant-steps).",
        key="sweep.method.samples",
        fix=f"write method: {{name: {name}, samples: 32}} or {{name: {name}, budget: 20000}}")
  samples = (domains.check_count(opts["samples"], "sweep.method.samples", "samples")
             if "samples" in opts else None)
  budget = (domains.check_count(opts["budget"], "sweep.method.budget", "budget")
            if "budget" in opts else None)
  batch = opts.get("batch")
  batch = (domains.check_count(batch, "sweep.method.batch", "batch") if batch is not None
           else default_batch(samples) if samples is not None else None)
  seed = domains.check_seed(opts.get("seed", 0), "sweep.method.seed")
  pruner = opts.get("pruner", "median")
  if pruner is None:
    pruner = "none"
  if pruner not in PRUNERS:
    raise domains.unknown_option(pruner, PRUNERS, key="sweep.method.pruner", what="pruner")
  storage, study = opts.get("storage"), opts.get("study")
  if storage is not None and not isinstance(storage, str):
    raise errors.ConfigError(f"storage must be a URL, got {storage!r}.",
                             key="sweep.method.storage", fix="write storage: sqlite:///study.db")
  if study is not None and not isinstance(study, str) and (
      not isinstance(study, _optuna().Study)
      or any(k in opts for k in ("storage", "pruner", "seed"))):
    raise errors.ConfigError(
        "study is a name, or (from Python) an optuna Study used as it is.",
        key="sweep.method.study",
        fix="give study: NAME (with storage:, seed:, pruner:), or a Study alone")
  if batch is not None and samples is not None:
    batch = min(batch, samples)
  return Options(name, samples, batch, seed, storage, study, pruner, budget)


# --------------------------------------------------------------------------
# Optuna.

def _optuna():
  try:
    import optuna  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.ConfigError("proposal methods (tpe, gp, qmc) need Optuna.",
                             key="sweep.method", fix=_INSTALL) from None
  return optuna


def _sampler(optuna, opts: Options):
  with warnings.catch_warnings():  # Chosen by name here: not a surprise.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    if opts.name == "tpe":
      return optuna.samplers.TPESampler(seed=opts.seed, constant_liar=True)
    if opts.name == "gp":
      if importlib.util.find_spec("torch") is None:
        raise errors.ConfigError("method gp (optuna's GPSampler) needs PyTorch.",
                                 key="sweep.method", fix="pip install torch, or use tpe")
      return optuna.samplers.GPSampler(seed=opts.seed)
    return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=opts.seed)


def _study(optuna, opts: Options, mode: str):
  direction = "maximize" if mode == "max" else "minimize"
  if opts.study is not None and not isinstance(opts.study, str):
    study = opts.study
  else:
    pruner = (optuna.pruners.MedianPruner() if opts.pruner == "median"
              else optuna.pruners.NopPruner())
    try:
      study = optuna.create_study(storage=opts.storage, sampler=_sampler(optuna, opts),
                                  pruner=pruner, study_name=opts.study, direction=direction,
                                  load_if_exists=opts.study is not None)
    except (ValueError, ImportError, RuntimeError) as e:
      if isinstance(e, errors.ConfigError):
        raise
      raise errors.ConfigError(f"cannot open the study: {errors.first_line(e)}",
                               key="sweep.method.storage",
                               fix="give a storage URL such as sqlite:///study.db") from e
  if [d.name.lower() for d in study.directions] != [direction]:
    raise errors.ConfigError(
        f"the study '{study.study_name}' is not to {direction} one value, as the target "
        f"needs.", key="sweep.method.study", fix="give another study name, or mode:")
  return study


def _distributions(optuna, space: search_space_lib.Space) -> tuple[dict, dict]:
  """Optuna distributions of the searched keys, and how to decode choices."""
  dists, decode = {}, {}
  for key, d in space.params:
    if isinstance(d, domains.Choice):
      # Optuna's choices are scalars: a tuple value is named by its JSON.
      names = [v if v is None or isinstance(v, (bool, int, float, str))
               else domains.canonical(v) for v in d.options]
      decode[key] = dict(zip(names, d.options))
      dists[key] = optuna.distributions.CategoricalDistribution(names)
    elif isinstance(d, domains.IntUniform):
      dists[key] = optuna.distributions.IntDistribution(d.low, d.high)
    else:
      dists[key] = optuna.distributions.FloatDistribution(
          d.low, d.high, log=isinstance(d, domains.LogUniform))
  return dists, decode


class Pruning(scheduling.Base):
  """The scheduler of a round: reports each trial's mean target, stops pruned ones.

  Sweep-wide: at each boundary every trial of the round reports first, then
  each is asked whether to prune, so the pruner (the median of the other
  trials' values at that step) sees the same values whichever groups the
  trials train in.

  Args:
    trials: trial number -> the ``optuna.Trial`` asked for it.
    members: trial number -> its variants (one per seed) in the round's plan.
    target: the metric reported (as the run ranks on it).
  """

  name = "pruning"
  sweep_wide = True

  def __init__(self, trials: Mapping[int, Any], members: Mapping[int, Sequence[int]],
               target: str):
    self.trials, self.members, self.target = dict(trials), dict(members), target
    self.pruned: dict[int, int] = {}  # trial number -> step
    self.reported: dict[int, dict[int, float]] = {}  # trial number -> step -> value

  def boundary(self, b: scheduling.Boundary) -> scheduling.Decision:
    if self.target not in b.metrics:
      raise errors.ConfigError(f"the target '{self.target}' is not evaluated.", key="target",
                               fix=f"give target= one of: {', '.join(sorted(b.metrics))}")
    index = {v: j for j, v in enumerate(b.variants)}
    values = np.asarray(b.metrics[self.target], np.float64)
    asked = []
    for number, variants in self.members.items():
      live = [index[v] for v in variants if v in index and not b.stopped[index[v]]]
      value = selection.over_seeds(values[j] for j in live).mean
      if number in self.pruned or value is None:
        continue
      if b.step not in self.reported.setdefault(number, {}):
        self.trials[number].report(value, b.step)
        self.reported[number][b.step] = value
      if not any(b.final[index[v]] for v in variants if v in index):
        asked.append(number)
    stop: set[int] = set()
    for number in asked:
      if self.trials[number].should_prune():
        self.pruned[number] = b.step
        stop |= {v for v in self.members[number] if v in index}
    return scheduling.Decision(stop=frozenset(stop))

  def state_dict(self) -> dict:
    """What was reported and pruned (a resumed round reports each step once)."""
    return {"pruned": {str(k): v for k, v in self.pruned.items()},
            "reported": {str(k): {str(s): x for s, x in v.items()}
                         for k, v in self.reported.items()}}

  def load_state_dict(self, d: Mapping) -> None:
    self.pruned = {int(k): int(v) for k, v in d.get("pruned", {}).items()}
    self.reported = {int(k): {int(s): float(x) for s, x in v.items()}
                     for k, v in d.get("reported", {}).items()}
    for number, steps in self.reported.items():  # A resumed round's trials hear them again.
      trial = self.trials.get(number)
      if trial is not None:
        with warnings.catch_warnings():  # Optuna warns, and ignores, a step reported twice.
          warnings.simplefilter("ignore")
          for step, value in sorted(steps.items()):
            trial.report(value, step)


# --------------------------------------------------------------------------
# The search.

def fingerprint(components: plan_lib.Components, base: Mapping[str, Any],
                space: search_space_lib.Space, opts: Options) -> str:
  """A stable id of a search (its run directory records it).

  The fingerprint of a plan of the space's first point (components, base
  and fixed settings), with the space and the options.
  """
  point = {k: (d.options[0] if isinstance(d, domains.Choice) else d.low)
           for k, d in space.params}
  plan = plan_lib.make_plan(components, {**base, **dict(space.fixed)}, [point])
  desc = {"plan": fingerprint_lib.fingerprint(plan), "space": repr(space),
          "options": repr(dataclasses.replace(opts, study=_study_name(opts)))}
  return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def _study_name(opts: Options) -> str | None:
  return opts.study if opts.study is None or isinstance(opts.study, str) else (
      opts.study.study_name)


def _target(components: plan_lib.Components, base: Mapping[str, Any],
            target: str | None, mode: str | None) -> tuple[str, str]:
  """The metric told to the study, and its direction, before anything trains."""
  if target is None:
    task = None
    data = {k.partition(".")[2]: v for k, v in base.items() if k.startswith("data.")}
    try:
      task = program_lib.load_data(components, data).task
    except (errors.ConfigError, TypeError, ValueError):
      pass  # A factory that needs searched settings: the common default.
    target, default_mode = results_lib.default_target(
        ["val_accuracy", "val_nll", "val_mse", "val_objective"], task)
    return target, mode or default_mode
  return target, mode or results_lib.mode_of(target)


def search(components: plan_lib.Components, base: Mapping[str, Any],
           space: search_space_lib.Space, opts: Options, *,
           display: Mapping[str, str] | None = None,
           target: str | None = None, mode: str | None = None,
           early_stopping: Mapping[str, Any] | None = None,
           callback: Callable[[dict], None] | None = None,
           checkpoint_dir: str | None = None, resume: bool = False,
           **execute_kwargs) -> results_lib.Results:
  """Runs ``opts.rounds`` rounds of proposals, each trained as one population.

  With ``checkpoint_dir``, each round trains with its own engine checkpoint
  (``round-<r>/``) and a finished round's results, pruning reports and
  told values are saved (``search.json``, ``round-<r>.json``). ``resume``
  rebuilds the study from them: the seeded sampler is asked the finished
  rounds' trials again (refused if it proposes others), hears their reports
  and values, and the interrupted round resumes from its last boundary, so
  the search ends as an uninterrupted one would (an in-memory study only: a
  ``storage`` study already holds its trials).

  Args:
    components: what is trained.
    base: qualified settings shared by all trials.
    space: the search space, qualified
      (:func:`~jaxsweep.engine.search_space.search_space`, renamed).
    opts: the method's options (:func:`options`).
    display: column name per qualified key.
    target, mode: the metric reported and told (default: the task's
      validation metric), and its direction (the study's).
    early_stopping: as for any sweep (a stopped trial is told its value).
    callback: receives the engine's events of every round, and
      ``{"event": "round", "round", "rounds", "trials"}`` before each.
    **execute_kwargs: passed on to :func:`jaxsweep.engine.execute.execute`
      (mesh, lanes, chunk_size, memory_budget, unstable_factor).

  Returns:
    :class:`~jaxsweep.results.Results` with every trial of every round: one
    row per trial and seed, with ``round``, ``trial`` (the study's trial
    number) and ``told`` (``complete``, ``pruned`` or ``fail``).

  Raises:
    ConfigError: for a missing Optuna, a study of the other direction, or
      any error a sweep raises; trials asked but not told are told ``FAIL``.
  """
  optuna = _optuna()
  if jax.process_count() > 1 and (opts.storage is not None or not isinstance(
      opts.study, (str, type(None)))):
    # Each process asks its own sampler: only an in-memory study with a seed
    # proposes the same trials in every process.
    raise errors.ConfigError(
        "a shared study in a multi-process run: every process would ask for trials.",
        key="sweep.method.storage", fix="run the search in one process, or drop storage:")
  target, mode = _target(components, base, target, mode)
  dists, decode = _distributions(optuna, space)
  base = {**base, **dict(space.fixed)}
  seeds = space.seeds or (None,)
  emit = callback or (lambda event: None)
  parts = []
  t0 = time.perf_counter()
  verbosity = optuna.logging.get_verbosity()
  optuna.logging.set_verbosity(optuna.logging.WARNING)  # jaxsweep reports progress.
  per_trial = _max_steps(components, base, space) * len(seeds)
  if opts.budget is not None and opts.budget < per_trial:
    raise errors.ConfigError(
        f"budget={opts.budget} variant-steps is less than one trial ({per_trial}: its steps "
        f"x {len(seeds)} seed(s)).", key="sweep.method.budget",
        fix=f"give budget: {per_trial} or more")
  batch = opts.batch if opts.batch is not None else default_batch(
      opts.samples if opts.samples is not None else opts.budget // per_trial)
  asked = spent = 0
  saved = _Saved(checkpoint_dir, resume, opts)
  try:
    study = _study(optuna, opts, mode)
    for r in itertools.count():
      n = batch if opts.samples is None else min(batch, opts.samples - asked)
      if opts.budget is not None:  # Only trials the budget left can train in full.
        n = min(n, (opts.budget - spent) // per_trial)
      if n < 1:
        break
      emit({"event": "round", "round": r, "rounds": opts.rounds, "trials": n})
      trials = [study.ask(dists) for _ in range(n)]
      asked += n
      told: dict[int, str] = {}
      done = saved.round(r)
      if done is not None:  # Finished before a resume: told again, not trained.
        res, owner, told = saved.replay(done, trials, optuna, study, r)
        parts.append((res, owner, told))
        spent += sum(int(row["steps"]) for row in res.rows)
        continue
      try:
        points, owner = [], []
        for t in trials:
          values = {k: decode[k][v] if k in decode else v for k, v in t.params.items()}
          for s in seeds:
            points.append(values if s is None else {**values, keys.SEED: s})
            owner.append(t.number)
        plan = structure.make_plan(components, base, points, display=display)
        members: dict[int, list[int]] = {}
        for v, number in enumerate(owner):
          members.setdefault(number, []).append(v)
        pruning = Pruning({t.number: t for t in trials}, members, target)
        scheduler = schedulers.make(pruning, early_stopping=early_stopping)
        live = saved.live_dir(r)
        res = execute.execute(plan, scheduler=scheduler, callback=callback, target=target,
                              mode=mode, checkpoint_dir=live,
                              resume=saved.resume and ckpt_lib.exists(live), **execute_kwargs)
        told = _tell(optuna, study, trials, members, res, pruning.pruned, r)
        saved.finished(r, res, owner, told, pruning, trials)
      finally:
        for t in trials:
          if t.number not in told:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
      parts.append((res, owner, told))
      spent += sum(int(row["steps"]) for row in res.rows)
  finally:
    optuna.logging.set_verbosity(verbosity)
  return _merge(parts, target, mode, time.perf_counter() - t0)


class _Saved:
  """A search's finished rounds on disk (``checkpoint_dir``), for a resume."""

  def __init__(self, directory: str | None, resume: bool, opts: Options):
    self.directory, self.resume = directory, resume
    self.rounds: list[dict] = []
    if directory is None:
      return
    path = os.path.join(directory, "search.json")
    if resume and os.path.isfile(path):
      if opts.storage is not None or not isinstance(opts.study, (str, type(None))):
        raise errors.ConfigError(
            "a search with a storage study resumes through the study, not a checkpoint.",
            key="resume", fix="run again without --resume: the study knows its trials")
      with open(path) as f:
        self.rounds = json.load(f)["rounds"]
    elif not resume:
      os.makedirs(directory, exist_ok=True)

  def round(self, r: int) -> dict | None:
    return self.rounds[r] if r < len(self.rounds) else None

  def live_dir(self, r: int) -> str | None:
    return None if self.directory is None else os.path.join(self.directory, f"round-{r}")

  def finished(self, r, res, owner, told, pruning, trials) -> None:
    if self.directory is None:
      return
    path = os.path.join(self.directory, f"round-{r}.json")
    res.to_json(path)
    self.rounds.append({
        "owner": owner, "told": {str(k): v for k, v in told.items()},
        "params": [t.params for t in trials], "results": os.path.basename(path),
        "pruning": pruning.state_dict()})
    results_lib.atomic_write(os.path.join(self.directory, "search.json"),
                             results_lib.rows_to_json({"rounds": self.rounds}))

  def replay(self, done, trials, optuna, study, r):
    """A finished round told to a rebuilt study: the same trials, reports, values."""
    if [t.params for t in trials] != done["params"]:
      raise errors.CheckpointError(
          f"resuming round {r}: the sampler proposed other trials than the interrupted run.",
          key="resume", fix="resume with the same config and sampler seed, or start afresh")
    res = results_lib.Results.from_json(os.path.join(self.directory, done["results"]))
    owner = done["owner"]
    members: dict[int, list[int]] = {}
    for v, number in enumerate(owner):
      members.setdefault(number, []).append(v)
    pruning = Pruning({t.number: t for t in trials}, members, res.target)
    pruning.load_state_dict(done["pruning"])  # Reports each trial's values again.
    told = _tell(optuna, study, trials, members, res, pruning.pruned, r)
    return res, owner, told


def _max_steps(components: plan_lib.Components, base: Mapping[str, Any],
               space: search_space_lib.Space) -> int:
  """The most steps one variant of the search trains (``train.steps``, or
  the largest it is searched over)."""
  params = dict(space.params)
  searched = params.get("train.steps")
  if isinstance(searched, domains.Choice):
    return int(max(searched.options))
  if searched is not None:
    return int(searched.high)
  point = {k: (d.options[0] if isinstance(d, domains.Choice) else d.low)
           for k, d in space.params}
  plan = plan_lib.make_plan(components, base, [point])
  return int(plan.variants[0][keys.Key("train", "steps")])


def _tell(optuna, study, trials, members, res: results_lib.Results,
          pruned: Mapping[int, int], round_: int) -> dict[int, str]:
  """Tells the study each trial's result; returns trial number -> state told."""
  state = optuna.trial.TrialState
  told = {}
  for t in trials:
    rows = [res.rows[v] for v in members[t.number]]
    t.set_user_attr("jaxsweep_round", round_)
    t.set_user_attr("jaxsweep_status", [r["status"] for r in rows])
    value = selection.over_seeds(r.get(res.target) for r in rows
                                 if r["status"] != results_lib.STATUS_DIVERGED).mean
    if t.number in pruned:
      study.tell(t, state=state.PRUNED)
      told[t.number] = "pruned"
    elif value is not None:
      study.tell(t, value)
      told[t.number] = "complete"
    else:
      study.tell(t, state=state.FAIL)
      told[t.number] = "fail"
  return told


def _merge(parts, target: str, mode: str, seconds: float) -> results_lib.Results:
  """One Results of every round: variants, groups renumbered in round order."""
  rows, history, settings, states, lineage, groups, metrics = [], {}, {}, {}, {}, [], []
  offset = group_offset = 0
  for r, (res, owner, told) in enumerate(parts):
    for row in res.rows:
      i = row["variant"]
      number = owner[i]
      new = {"variant": i + offset, "id": row["id"], "round": r, "trial": number,
             "told": told.get(number)}
      new.update({k: v for k, v in row.items() if k not in new})
      new["group"] = row["group"] + group_offset
      rows.append(new)
      history[i + offset] = res.history[i]
      settings[i + offset] = res.settings[i]
      if i in res.lineage:
        lineage[i + offset] = res.lineage[i]
      # The engine made these Results: its trained arrays move with the rows.
      if i in res._states:  # pylint: disable=protected-access
        states[i + offset] = res._states[i]  # pylint: disable=protected-access
    groups.extend({**g, "group": g["group"] + group_offset, "round": r} for g in res.groups)
    metrics.extend(m for m in res.metrics if m not in metrics)
    offset += len(res.rows)
    group_offset += len(res.groups)
  swept = parts[0][0].swept if parts else []
  return results_lib.Results(rows, history, swept=swept, target=target, mode=mode,
                             groups=groups, settings=settings, states=states,
                             seconds=seconds, metrics=metrics, lineage=lineage)
