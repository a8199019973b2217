"""Optimizer trajectories against lecture 004's equations and Keras 3.

The problem: a quadratic bowl over three parameter tensors (a conv kernel, a
dense kernel, a bias) with per-element curvatures, so each element follows its
own path. Gradients come from the same NumPy function on both sides, so Keras
and optax see the same inputs at every step.
"""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import optim  # noqa: E402

STEPS = 25
SHAPES = {"conv2d/kernel": (2, 2, 1, 3), "dense/kernel": (4, 3), "dense/bias": (3,)}


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  curv = {k: rng.uniform(0.2, 4.0, s).astype(np.float32) for k, s in SHAPES.items()}
  target = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  w0 = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  grad = lambda w: {k: (curv[k] * (np.asarray(w[k]) - target[k])).astype(w[k].dtype)
                    for k in SHAPES}
  return w0, grad


def _nest(flat):
  return {"conv2d": {"kernel": flat["conv2d/kernel"]},
          "dense": {"kernel": flat["dense/kernel"], "bias": flat["dense/bias"]}}


def _flat(params):
  return {"conv2d/kernel": params["conv2d"]["kernel"],
          "dense/kernel": params["dense"]["kernel"],
          "dense/bias": params["dense"]["bias"]}


def run_ours(tx, w0, grad, steps=STEPS, use_jit=False):
  """Trajectory of ``tx`` on the problem: a list of flat NumPy param dicts."""
  params = jax.tree.map(jnp.asarray, _nest(w0))
  state = tx.init(params)
  update = jax.jit(tx.update) if use_jit else tx.update
  out, rates = [], []
  for _ in range(steps):
    g = _nest(grad({k: np.asarray(v) for k, v in _flat(params).items()}))
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append({k: np.asarray(v) for k, v in _flat(params).items()})
    rates.append(float(optim.learning_rate(state)))
  return out, rates


def run_keras(opt, w0, grad, steps=STEPS, set_each_step=None):
  """Trajectory of a Keras optimizer; ``set_each_step(opt, step)`` emulates a
  callback changing hyperparameters before each update."""
  names = list(SHAPES)
  variables = [keras.Variable(w0[k], name=k.replace("/", "_")) for k in names]
  out = []
  for step in range(steps):
    if set_each_step is not None:
      set_each_step(opt, step)
    g = grad({k: v.numpy() for k, v in zip(names, variables)})
    opt.apply([g[k] for k in names], variables)
    out.append({k: v.numpy() for k, v in zip(names, variables)})
  return out


def assert_same_trajectory(ours, theirs, rtol=2e-5, atol=2e-6):
  assert len(ours) == len(theirs)
  for step, (a, b) in enumerate(zip(ours, theirs)):
    for k in SHAPES:
      np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol,
                                 err_msg=f"step {step}, {k}")


KERAS_CASES = [
    ("sgd", dict(learning_rate=0.05)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    ("adagrad", dict(learning_rate=0.1)),
    ("rmsprop", dict(learning_rate=0.01)),
    ("rmsprop", dict(learning_rate=0.01, momentum=0.8, rho=0.8)),
    ("rmsprop", dict(learning_rate=0.01, centered=True, momentum=0.5)),
    ("rmsprop", dict(learning_rate=0.01, epsilon=0.5, centered=True)),
    ("adam", dict(learning_rate=0.05)),
    ("adam", dict(learning_rate=0.05, beta_1=0.8, beta_2=0.99, amsgrad=True)),
    ("adam", dict(learning_rate=0.05, epsilon=1.0)),  # Keras' eps placement shows
    ("adamax", dict(learning_rate=0.05)),
    ("nadam", dict(learning_rate=0.05)),
    ("nadam", dict(learning_rate=0.05, beta_1=0.7, epsilon=0.5)),
]
KERAS_CLASSES = dict(sgd="SGD", adagrad="Adagrad", rmsprop="RMSprop", adam="Adam",
                     adamax="Adamax", nadam="Nadam")


def _keras_opt(name, hp):
  return getattr(keras.optimizers, KERAS_CLASSES[name])(**hp)


def _case_id(case):
  name, hp = case
  return "-".join([name] + [f"{k}={v}" for k, v in hp.items() if k != "learning_rate"])


@pytest.mark.parametrize("name,hp", KERAS_CASES, ids=map(_case_id, KERAS_CASES))
def test_constant_rate_matches_keras(name, hp):
  w0, grad = _problem()
  tx = optim.create(dict(name=name, **hp), dict(name="constant"),
                    steps_per_epoch=5, num_epochs=5)
  ours, rates = run_ours(tx, w0, grad)
  assert_same_trajectory(ours, run_keras(_keras_opt(name, hp), w0, grad))
  assert rates == [pytest.approx(hp["learning_rate"])] * STEPS


SCHEDULE_CASES = [KERAS_CASES[i] for i in (1, 2, 3, 5, 8, 11, 12)]


@pytest.mark.parametrize("name,hp", SCHEDULE_CASES, ids=map(_case_id, SCHEDULE_CASES))
def test_step_schedule_matches_keras(name, hp):
  """A rate that changes every step; Keras gets the same rate set before each
  update (LearningRateScheduler-style). Catches where the rate enters the
  velocity (Keras' SGD / RMSprop momentum: inside it; optax.sgd: outside)."""
  w0, grad = _problem(1)
  lr0 = hp["learning_rate"]
  tx = optim.create(dict(name=name, **hp),
                    dict(name="exponential", s=10, unit="step"),
                    steps_per_epoch=5, num_epochs=5)
  ours, rates = run_ours(tx, w0, grad, use_jit=True)
  expected = [np.float32(lr0 * 0.1 ** (t / 10)) for t in range(STEPS)]
  np.testing.assert_allclose(rates, expected, rtol=1e-6)

  def set_rate(opt, step):
    opt.learning_rate = float(expected[step])

  assert_same_trajectory(ours, run_keras(_keras_opt(name, hp), w0, grad,
                                         set_each_step=set_rate))


def test_sgd_momentum_with_schedule_is_not_optax_sgd():
  """Why sgd is composed as scale-then-trace: optax.sgd scales the velocity by
  the current rate, which differs from Keras once the rate changes."""
  w0, grad = _problem(1)
  sched = lambda t: 0.05 * 0.1 ** (t / 10)
  ours, _ = run_ours(optim.create(dict(name="sgd", learning_rate=0.05, momentum=0.9),
                                  dict(name="exponential", s=10, unit="step"),
                                  steps_per_epoch=5, num_epochs=5), w0, grad)
  plain = optax.inject_hyperparams(optax.sgd)(learning_rate=sched, momentum=0.9)
  theirs, _ = run_ours(plain, w0, grad)
  assert not np.allclose(ours[-1]["dense/kernel"], theirs[-1]["dense/kernel"],
                         rtol=1e-3)


def test_epoch_schedule_matches_keras_callback():
  """'epoch' unit: the rate changes only at epoch boundaries, like Keras'
  LearningRateScheduler (lecture: piecewise 0.01 / 0.005 / 0.001)."""
  w0, grad = _problem(2)
  spe = 3
  sched = dict(name="piecewise", boundaries=(2, 5), values=(0.05, 0.02, 0.01),
               unit="epoch")
  hp = dict(learning_rate=0.05, momentum=0.9)
  tx = optim.create(dict(name="sgd", **hp), sched, steps_per_epoch=spe,
                    num_epochs=9)
  ours, rates = run_ours(tx, w0, grad, steps=24, use_jit=True)

  def fn(epoch):  # the lecture's piecewise_constant_fn, shape-wise
    return 0.05 if epoch < 2 else 0.02 if epoch < 5 else 0.01

  assert rates == [pytest.approx(fn(s // spe)) for s in range(24)]
  callback = lambda opt, step: setattr(opt, "learning_rate", fn(step // spe)) \
      if step % spe == 0 else None
  assert_same_trajectory(ours, run_keras(_keras_opt("sgd", hp), w0, grad, 24,
                                         set_each_step=callback))


@pytest.mark.parametrize("name,hp,attr", [
    ("sgd", dict(learning_rate=0.01, momentum=0.9), "momentum"),
    ("rmsprop", dict(learning_rate=0.001, momentum=0.9), "momentum"),
    ("adam", dict(learning_rate=0.01), "beta_1"),
    ("nadam", dict(learning_rate=0.01), "beta_1"),
])
def test_one_cycle_with_momentum_matches_keras(name, hp, attr):
  """1cycle moves the rate and, inversely, the momentum (sgd / rmsprop
  momentum, adam-family beta_1) every step; Keras is driven the same way."""
  w0, grad = _problem(3)
  sched = dict(name="1cycle", max_learning_rate=10 * hp["learning_rate"])
  tx = optim.create(dict(name=name, **hp), sched, steps_per_epoch=5, num_epochs=5)
  ours, rates = run_ours(tx, w0, grad, use_jit=True)
  params = jax.tree.map(jnp.asarray, _nest(w0))
  state, values = tx.init(params), []
  for _ in range(STEPS):  # the hyperparameters each update used
    _, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    values.append({k: float(v) for k, v in optim.hyperparams(state).items()})
  np.testing.assert_allclose([v["learning_rate"] for v in values], rates, rtol=1e-6)
  assert values[0][attr] == pytest.approx(0.95)
  assert min(v[attr] for v in values) == pytest.approx(0.85)

  def drive(opt, step):
    opt.learning_rate = values[step]["learning_rate"]
    setattr(opt, attr, values[step][attr])

  assert_same_trajectory(ours, run_keras(_keras_opt(name, hp), w0, grad,
                                         set_each_step=drive))


@pytest.mark.parametrize("name,hp", [
    ("adam", dict(learning_rate=0.05, weight_decay=0.1)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, weight_decay=0.2)),
    ("rmsprop", dict(learning_rate=0.01, weight_decay=0.3)),
])
def test_weight_decay_matches_keras_with_bias_excluded(name, hp):
  """Decoupled decay w -= w*wd*lr, on kernels only (Keras told to skip bias)."""
  w0, grad = _problem(4)
  tx = optim.create(dict(name=name, **hp), None, steps_per_epoch=5, num_epochs=5)
  ours, _ = run_ours(tx, w0, grad)
  opt = _keras_opt(name, hp)
  opt.exclude_from_weight_decay(var_names=["bias"])
  assert_same_trajectory(ours, run_keras(opt, w0, grad))
  without, _ = run_ours(optim.create(
      dict(name=name, **{k: v for k, v in hp.items() if k != "weight_decay"}),
      None, steps_per_epoch=5, num_epochs=5), w0, grad)
  # The bias follows the undecayed path exactly; the kernels do not.
  np.testing.assert_array_equal(ours[-1]["dense/bias"], without[-1]["dense/bias"])
  assert not np.allclose(ours[-1]["dense/kernel"], without[-1]["dense/kernel"])


# --- Lecture 004's equations, written out in NumPy (float64) ---------------


def _lecture_run(step_fn, w0, grad, steps=STEPS):
  """Runs ``step_fn(w, state, t) -> (w, state, recorded)`` over the problem."""
  w = {k: v.astype(np.float64) for k, v in w0.items()}
  state, out = {}, []
  for t in range(1, steps + 1):
    w, state, rec = step_fn(w, state, t)
    out.append(rec)
  return out


def _zeros_like(w):
  return {k: np.zeros_like(v) for k, v in w.items()}


def test_momentum_equals_lecture():
  """m <- beta m - eta grad;  theta <- theta + m."""
  w0, grad = _problem(5)
  eta, beta = 0.05, 0.9

  def step(w, s, t):
    m = s.get("m", _zeros_like(w))
    g = grad(w)
    m = {k: beta * m[k] - eta * g[k] for k in w}
    w = {k: w[k] + m[k] for k in w}
    return w, {"m": m}, w

  ours, _ = run_ours(optim.create(dict(name="sgd", learning_rate=eta, momentum=beta),
                                  None, steps_per_epoch=1, num_epochs=1), w0, grad)
  assert_same_trajectory(ours, _lecture_run(step, w0, grad), rtol=1e-5)


def test_nesterov_equals_lecture_look_ahead():
  """Lecture NAG: m <- beta m - eta grad(theta + beta m); theta <- theta + m.

  Keras (and this project) store the look-ahead point phi = theta + beta m and
  take the gradient there: the params equal the lecture's theta + beta m.
  """
  w0, grad = _problem(6)
  eta, beta = 0.05, 0.9

  def step(w, s, t):
    m = s.get("m", _zeros_like(w))
    g = grad({k: w[k] + beta * m[k] for k in w})
    m = {k: beta * m[k] - eta * g[k] for k in w}
    w = {k: w[k] + m[k] for k in w}
    return w, {"m": m}, {k: w[k] + beta * m[k] for k in w}

  tx = optim.create(dict(name="sgd", learning_rate=eta, momentum=beta, nesterov=True),
                    None, steps_per_epoch=1, num_epochs=1)
  ours, _ = run_ours(tx, w0, grad)
  assert_same_trajectory(ours, _lecture_run(step, w0, grad), rtol=1e-5)


def test_adagrad_equals_lecture():
  """s <- s + g*g;  theta <- theta - eta g / sqrt(s + eps). The lecture starts
  s at 0; Keras' default initial_accumulator_value is 0.1."""
  w0, grad = _problem(7)
  eta, eps = 0.3, 1e-7

  def step(w, s, t):
    acc = s.get("s", _zeros_like(w))
    g = grad(w)
    acc = {k: acc[k] + g[k] * g[k] for k in w}
    w = {k: w[k] - eta * g[k] / np.sqrt(acc[k] + eps) for k in w}
    return w, {"s": acc}, w

  tx = optim.create(dict(name="adagrad", learning_rate=eta,
                         initial_accumulator_value=0.0), None,
                    steps_per_epoch=1, num_epochs=1)
  ours, _ = run_ours(tx, w0, grad)
  assert_same_trajectory(ours, _lecture_run(step, w0, grad), rtol=1e-5)


def test_rmsprop_equals_lecture():
  """s <- beta s + (1 - beta) g*g;  theta <- theta - eta g / sqrt(s + eps):
  epsilon inside the square root, in the lecture and in Keras 3 alike
  (checked with a large eps, where the placement matters)."""
  w0, grad = _problem(8)
  eta, beta, eps = 0.02, 0.9, 0.5

  def step(w, s, t):
    acc = s.get("s", _zeros_like(w))
    g = grad(w)
    acc = {k: beta * acc[k] + (1 - beta) * g[k] * g[k] for k in w}
    w = {k: w[k] - eta * g[k] / np.sqrt(acc[k] + eps) for k in w}
    return w, {"s": acc}, w

  tx = optim.create(dict(name="rmsprop", learning_rate=eta, rho=beta, epsilon=eps),
                    None, steps_per_epoch=1, num_epochs=1)
  ours, _ = run_ours(tx, w0, grad)
  assert_same_trajectory(ours, _lecture_run(step, w0, grad), rtol=1e-5)


def _lecture_adam(grad, eta, b1, b2, eps, typo=False, keras_eps=False):
  """Lecture steps 1-5 (m kept with the lecture's negative sign). ``typo``
  keeps step 3's 1 - beta_2^t; ``keras_eps`` uses Keras' eps placement."""

  def step(w, s, t):
    m, v = s.get("m", _zeros_like(w)), s.get("s", _zeros_like(w))
    g = grad(w)
    m = {k: b1 * m[k] - (1 - b1) * g[k] for k in w}
    v = {k: b2 * v[k] + (1 - b2) * g[k] * g[k] for k in w}
    m_hat = {k: m[k] / (1 - (b2 if typo else b1) ** t) for k in w}
    v_hat = {k: v[k] / (1 - b2 ** t) for k in w}
    if keras_eps:  # Keras raises the float32-cast betas to the power t
      p1, p2 = (float(np.float32(b)) ** t for b in (b1, b2))
      alpha = eta * np.sqrt(1 - p2) / (1 - p1)
      w = {k: w[k] + alpha * m[k] / (np.sqrt(v[k]) + eps) for k in w}
    else:
      w = {k: w[k] + eta * m_hat[k] / np.sqrt(v_hat[k] + eps) for k in w}
    return w, {"m": m, "s": v}, w

  return step


def test_adam_equals_lecture_with_corrected_bias_correction():
  """Lecture steps 1-5 match Adam once step 3's typo is fixed (m_hat divides by
  1 - beta_1^t, not beta_2^t). Epsilon differs -- the lecture adds it to
  s_hat under the root, Keras to the uncorrected sqrt(s) -- invisible at 1e-7,
  plain at eps = 0.5, where the Keras form written out here still matches."""
  w0, grad = _problem(9)
  eta, b1, b2 = 0.05, 0.9, 0.999
  make = lambda eps: optim.create(
      dict(name="adam", learning_rate=eta, epsilon=eps), None,
      steps_per_epoch=1, num_epochs=1)
  ours, _ = run_ours(make(1e-7), w0, grad)
  lecture = _lecture_run(_lecture_adam(grad, eta, b1, b2, 1e-7), w0, grad)
  assert_same_trajectory(ours, lecture, rtol=1e-4, atol=1e-5)

  typo = _lecture_run(_lecture_adam(grad, eta, b1, b2, 1e-7, typo=True), w0, grad)
  assert not np.allclose(typo[0]["dense/kernel"], ours[0]["dense/kernel"], rtol=1e-2)

  big_eps, _ = run_ours(make(0.5), w0, grad)
  keras_form = _lecture_run(
      _lecture_adam(grad, eta, b1, b2, 0.5, keras_eps=True), w0, grad)
  assert_same_trajectory(big_eps, keras_form, rtol=1e-5)
  lecture_eps = _lecture_run(_lecture_adam(grad, eta, b1, b2, 0.5), w0, grad)
  assert not np.allclose(big_eps[-1]["dense/kernel"], lecture_eps[-1]["dense/kernel"],
                         rtol=1e-3)


def test_adamax_follows_keras_equations():
  """The lecture only says AdaMax replaces step 2 by s <- max(beta_2 s, grad)
  (the absolute value is missing there); Keras: u = max(b2 u, |g|),
  w -= lr m / ((1 - b1^t)(u + eps))."""
  w0, grad = _problem(10)
  eta, b1, b2, eps = 0.05, 0.9, 0.999, 1e-7

  def step(w, s, t):
    m, u = s.get("m", _zeros_like(w)), s.get("u", _zeros_like(w))
    g = grad(w)
    m = {k: b1 * m[k] + (1 - b1) * g[k] for k in w}
    u = {k: np.maximum(b2 * u[k], np.abs(g[k])) for k in w}
    w = {k: w[k] - eta * m[k] / ((1 - b1 ** t) * (u[k] + eps)) for k in w}
    return w, {"m": m, "u": u}, w

  ours, _ = run_ours(optim.create(dict(name="adamax", learning_rate=eta), None,
                                  steps_per_epoch=1, num_epochs=1), w0, grad)
  assert_same_trajectory(ours, _lecture_run(step, w0, grad), rtol=1e-5)


def test_defaults_are_keras_defaults():
  """Keras 3's defaults: sgd 0.01, others 0.001, epsilon 1e-7."""
  w0, grad = _problem(11)
  for name in ("sgd", "adagrad", "rmsprop", "adam", "adamax", "nadam"):
    tx = optim.create(dict(name=name), None, steps_per_epoch=1, num_epochs=1)
    ours, _ = run_ours(tx, w0, grad, steps=3)
    assert_same_trajectory(ours, run_keras(_keras_opt(name, {}), w0, grad, 3))
