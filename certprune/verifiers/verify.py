"""``verify(model, prop, timeout, config) -> Result``: falsify, bound, branch and bound, exact leaves.

Order of work (each phase only if the previous one did not decide):
1. falsify: random + corner sampling and batched PGD on the float32 model (``attack``);
2. bound: CROWN on the whole region for all disjuncts at once, then alpha-CROWN when available;
3. refine (ReLU splitting on MLPs, ``refine_layers``): MILP/LP bounds of the first hidden layers'
   pre-activations on the whole region (``refine``), then the root bound again with them;
4. branch and bound (``bab``): input splitting for low-dimensional inputs, ReLU splitting
   otherwise (``VerifyConfig.strategy`` forces one), with LP leaves where all ReLUs are stable;
   every domain keeps the refined bounds as fixed prior bounds.

Soundness conventions
- Bounds are float64 on the exact weights. A disjunct ``A y <= b`` is refuted only when some row
  has ``lower(A_r y - b_r) > cert_margin * (1 + |b_r|)`` (default ``cert_margin = 1e-7``).
  CERTIFIED means every disjunct is refuted on every domain, i.e. the property holds for the
  network in exact real arithmetic (the semantics of alpha-beta-CROWN and Marabou). The lower
  bounds are rigorous for real arithmetic despite float64 rounding: the bound passes subtract
  their own rounding margin (``certprune.bounds.crown``, "Rounding": IBP, CROWN, alpha/beta-CROWN,
  intermediate bounds, every branch-and-bound domain) and LP leaves re-derive their dual
  certificate by the same rigorous sweep, so ``cert_margin`` comes on top; it absorbs float32
  rounding of well-conditioned nets. MILP leaves trust HiGHS's dual bound beyond a 1e-5 tolerance.
  It is not a rigorous float32 bound: on ill-conditioned nets (large cancelling weights) float32
  execution can differ from exact arithmetic by more (see tests/test_redteam_soundness.py; a
  rigorous worst-case float32 margin measured 0.1-9 at the root of ACAS Xu boxes, which would
  block nearly every certificate). Raise ``cert_margin`` for such nets, or ask for
  ``semantics = "float32"`` (chain MLPs and Linear / Conv / ReLU / Add / Concat / shape graphs):
  each row's margin then also adds ``|A_r| e``, where ``e``
  is the rigorous float32 rounding-error bound of :func:`certprune.bounds.float32.output_error`
  over the whole region (the bound the fairness audit uses per box). ``stats["semantics"]`` names it.
- FALSIFIED only for a point that lies in the region (integer inputs integral; a coordinate may
  equal the float32 rounding of a box bound where no float32 number lies inside), given as float32
  values, and whose float32 output on the ORIGINAL model (the object passed in) violates the
  property (``Property.is_violated``: margin <= 0, strict rows strictly). The Result carries that
  point and that output.
- Out of time -> UNKNOWN (never an exception); the deadline (95 % of ``timeout``) is checked
  between batches, between the chunks of densifying a large model (``prepare``) and between the
  ReLU layers of the root CROWN pass (``DeadlineExceeded``, caught here), and single LP calls get
  the remaining time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from certprune.errors import ConfigError, DeadlineExceeded, ShapeMismatchError
from certprune.results import Result, Verdict
from certprune.semantics import DEFAULT, parse_semantics
from certprune.specs import Property

STRATEGIES = ("auto", "input", "relu")
# torch CPU threads asked for (--threads, config threads): torch.set_num_threads(100000) is accepted
# and the next matrix product segfaults while the thread pool is created
MAX_THREADS = 1024
MAX_COUNT = 1 << 31  # sizes and counts past this cannot index a tensor (they meant a typo, not a search)


@dataclass(frozen=True)
class VerifyConfig:
    """Knobs of :func:`verify`; build from a dict with :meth:`from_dict` (unknown keys rejected)."""

    strategy: str = "auto"              # auto: input splitting iff input dim <= input_split_max_dim
    input_split_max_dim: int = 24
    attack_restarts: int = 32
    attack_steps: int = 50
    attack_samples: int = 1024
    attack_corners: int = 256
    attack_odi_restarts: int = 256      # ReLU branching only: PGD from this many output-diversified starts
                                        # when plain PGD fails (attack.odi_starts), and such rounds repeated
                                        # on the whole region with fresh seeds in at most a tenth of its time
    attack_odi_steps: int = 10
    seed: int = 0
    cert_margin: float = 1e-7           # refute a row only if its lower bound > cert_margin * (1 + |b|)
    use_alpha_crown: bool = True
    batch: int = 256                    # domains popped per branch-and-bound step (2x children bounded)
    queue_cap: int = 100_000
    max_input_depth: int = 64
    relu_switch_unstable: int = 1       # input strategy: split ReLUs once this few are unstable
    input_batch: int = 2048             # input strategy on chains: boxes bounded per step of the batched
                                        # look-ahead input branching rule (bab_input.lookahead_*); 0 = smear score
    input_alpha_iters: int = 10         # alpha-CROWN steps on every box of that search (0 = plain CROWN)
    input_alpha_after: int = 20000      # ... once it has bounded this many boxes with plain CROWN
    threads: int = 1                    # torch intra-op threads during the call (0 = leave torch's setting)
    milp_max_unstable: int = 48         # ReLU branching: hand domains with this few unstable ReLUs to the MILP
    milp_time_limit: float = 5.0        # seconds per MILP call (a domain it leaves open is branched further)
    milp_after: int = 300               # ReLU branching: domains bounded before the MILP leaf is tried (cheap
                                        # branching decides first: mnist_fc 256x2 prop_6/0.03 35 domains, 1.8 s)
    branch_candidates: int = 4         # ReLU branching: filtered smart branching among this many neurons
                                        # (bab_relu.choose_relus_fsb; 1 = the BaBSR score alone)
    optimize_iters: int = 8             # alpha/beta-CROWN Adam steps per branch-and-bound batch (0 = CROWN)
                                        # on the input strategy's ReLU hand-offs
    relu_optimize_iters: int = 16       # ... under the ReLU strategy (8 -> 16: mnist_fc 256x4 prop_11/0.05
                                        # 1019 -> 161 domains, 33 -> 8 s)
    warm_start: bool = True             # ReLU branching: children's alpha/beta start from the parent's last iterate
    interm_reuse: bool = True           # ReLU branching: children start from the parent's ReLU input bounds, no
                                        # CROWN pass up to the split layer (BabSettings.interm_reuse; False: afresh)
    refine_layers: int = 3              # ReLU branching on MLPs: MILP/LP-refine the pre-activation bounds of the
                                        # first this many ReLU layers once at the root (verifiers.refine; 0/1 = off)
    refine_min_inputs: int = 64         # ... on networks with at least this many inputs (MNIST: 784; on small
                                        # inputs forced to ReLU branching the LPs took time the search lacked)
    refine_time_fraction: float = 0.4   # ... in at most this fraction of the time left after the root bound
    refine_milp_limit: float = 0.0      # ... seconds per neuron bound MILP (0 = LP relaxation only: measured 8-10 s
                                        # per MILP bound on mnist_fc 256x4 layer 2, 44 binaries; LP ~0.01-0.2 s)
    semantics: str = DEFAULT.value      # exact | float32 (certprune.semantics; float32: problem.float32_graph)

    def __post_init__(self) -> None:
        object.__setattr__(self, "semantics", parse_semantics(self.semantics).value)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and math.isnan(v):
                raise ConfigError(f"{f.name} must be a number, got nan")
            if f.type in ("int", int) and f.name != "seed" and abs(v) >= MAX_COUNT:
                raise ConfigError(f"{f.name} must be below 2^31, got {v}")
        for name in ("batch", "queue_cap", "max_input_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads > MAX_THREADS:
            raise ConfigError(f"threads must be at most {MAX_THREADS}, got {self.threads}")
        for name in ("attack_restarts", "attack_steps", "attack_samples", "attack_corners", "attack_odi_restarts",
                     "attack_odi_steps", "branch_candidates", "relu_switch_unstable",
                     "optimize_iters", "relu_optimize_iters", "threads", "milp_max_unstable", "milp_time_limit", "milp_after", "input_batch",
                     "input_alpha_iters", "input_alpha_after", "refine_layers", "refine_milp_limit",
                     "refine_min_inputs", "seed", "input_split_max_dim"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (0.0 <= self.refine_time_fraction <= 1.0):
            raise ConfigError(f"refine_time_fraction must lie in [0, 1], got {self.refine_time_fraction}")
        if not (np.isfinite(self.cert_margin) and self.cert_margin >= 0):
            raise ConfigError(f"cert_margin must be a finite number >= 0, got {self.cert_margin}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "VerifyConfig":
        """Build from a mapping; raises ConfigError naming every unknown key."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown verify config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)


def _config(config) -> VerifyConfig:
    if config is None:
        return VerifyConfig()
    if isinstance(config, VerifyConfig):
        return config
    if isinstance(config, Mapping):
        return VerifyConfig.from_dict(config)
    raise ConfigError(f"config must be a VerifyConfig or a dict, got {type(config).__name__}")


def _model_hash(model) -> str | None:
    info = getattr(model, "info", None)
    return getattr(info, "sha256", None) or None


def verify(model, prop: Property, timeout: float | None = None, config: VerifyConfig | Mapping | None = None,
           progress: Callable[[dict], None] | None = None) -> Result:
    """Decide ``prop`` on ``model`` (Network, nn.Module or AffineReluNet); see module doc.

    ``timeout`` in seconds (None = no limit: complete on ReLU networks). Result.stats holds
    ``strategy``, ``phase`` (which phase decided), ``time_<phase>`` seconds, ``domains``,
    ``max_depth`` and the attack's evaluation count. ``progress`` (optional) is called with
    ``{"phase": name}`` as each phase starts and, during branch and bound, about twice a second
    with ``{"phase": "bab", "domains": queued, "bound": global lower bound, "processed": n}``.
    """
    from certprune.verifiers.problem import prepare

    t_start = time.monotonic()
    cfg = _config(config)
    if timeout is not None and not (np.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
    deadline = None if timeout is None else t_start + 0.95 * timeout
    try:
        pb = prepare(model, prop, cfg, deadline)
    except DeadlineExceeded:
        res = _unknown({"semantics": cfg.semantics, "time_total": time.monotonic() - t_start}, "prepare")
        return dataclasses.replace(res, model_hash=_model_hash(model))
    stats: dict[str, Any] = {"semantics": cfg.semantics, "strategy": pb.strategy, "input_dim": pb.net.input_dim,
                             "relus": sum(pb.net.relu_sizes)}
    with torch_threads(cfg.threads):
        try:
            res = _run(pb, cfg, deadline, stats, progress or _silent)
        except DeadlineExceeded:  # inside the root bound pass (the only deadline-raising phase)
            res = _unknown(stats, "bound")
    stats["time_total"] = time.monotonic() - t_start
    return dataclasses.replace(res, stats=stats, model_hash=_model_hash(model))


def _silent(event: dict) -> None:
    """The default progress callback: ignores every event."""


def _run(pb, cfg: VerifyConfig, deadline: float | None, stats: dict, progress: Callable[[dict], None]) -> Result:
    from certprune.verifiers.attack import falsify
    from certprune.verifiers.bab import BranchAndBound

    progress({"phase": "falsify"})
    t0 = time.monotonic()
    att = falsify(pb.run32, pb.prop, pb.lo, pb.hi, restarts=cfg.attack_restarts, steps=cfg.attack_steps,
                  samples=cfg.attack_samples, corners=cfg.attack_corners, seed=cfg.seed, int_mask=pb.int_mask,
                  deadline=deadline, odi_restarts=cfg.attack_odi_restarts if pb.strategy == "relu" else 0,
                  odi_steps=cfg.attack_odi_steps)  # ODI: high-dimensional inputs (ACAS Xu: +0.04 CPU s, no gain)
    stats.update(time_falsify=time.monotonic() - t0, attack_evaluations=att.evaluations, attack_margin=att.margin)
    if att.violated:
        hit = pb.confirm(att.x[None])
        if hit is not None:
            return pb.falsified(hit, stats, "falsify")
    if _timed_out(deadline):
        return _unknown(stats, "falsify")
    progress({"phase": "bound"})
    t0 = time.monotonic()
    alive = pb.root_alive(cfg, deadline)
    stats["time_bound"] = time.monotonic() - t0
    if not alive.any():
        stats["phase"] = "bound"
        return Result(Verdict.CERTIFIED, stats=stats, message="every disjunct refuted by bounds on the whole region")
    if _timed_out(deadline):
        return _unknown(stats, "bound")
    prior = None
    if pb.strategy == "relu" and cfg.refine_layers > 1 and pb.graph.input_dim >= cfg.refine_min_inputs:
        from certprune.verifiers.refine import root_refinement
        progress({"phase": "refine"})
        prior, rstats = root_refinement(pb.graph, pb.lo, pb.hi, cfg, deadline)
        stats.update(rstats)
        if prior is not None:
            alive = alive & pb.root_alive(cfg, deadline, prior)
            if not alive.any():
                stats["phase"] = "refine"
                return Result(Verdict.CERTIFIED, stats=stats,
                              message="every disjunct refuted by refined bounds on the whole region")
        if _timed_out(deadline):
            return _unknown(stats, "refine")
    progress({"phase": "bab", "domains": 1, "bound": None, "processed": 0})
    t0 = time.monotonic()
    out = BranchAndBound(pb.graph, pb.spec, pb.lo, pb.hi, pb.int_mask, pb.confirm, bab_settings(pb.strategy, cfg), deadline,
                         attack=_box_attack(pb, cfg, deadline) if cfg.attack_restarts else None,
                         progress=progress,
                         root_attack=_root_attack(pb, cfg, deadline) if pb.strategy == "relu" else None,
                         prior=prior).run(alive)
    stats.update(out.stats)
    stats["time_bab"] = time.monotonic() - t0
    if out.status is Verdict.FALSIFIED:
        return pb.falsified(out.x, stats, "bab")
    if out.status is Verdict.CERTIFIED:
        stats["phase"] = "bab"
        return Result(Verdict.CERTIFIED, stats=stats, message="every branch-and-bound domain refuted")
    return _unknown(stats, "bab", out.stats.get("reason", ""))


def bab_settings(strategy: str, cfg: VerifyConfig) -> BabSettings:
    """The branch-and-bound knobs of ``cfg`` for ``strategy`` ('input' or 'relu')."""
    from certprune.verifiers.bab import BabSettings

    iters = cfg.relu_optimize_iters if strategy == "relu" else cfg.optimize_iters
    return BabSettings(strategy, cfg.batch, cfg.queue_cap, cfg.max_input_depth, cfg.relu_switch_unstable,
                       iters, cfg.milp_max_unstable, cfg.milp_time_limit, cfg.input_batch,
                       cfg.branch_candidates, cfg.input_alpha_iters, cfg.input_alpha_after,
                       milp_after=cfg.milp_after, interm_reuse=cfg.interm_reuse, warm_start=cfg.warm_start)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads (restored afterwards; 0 = unchanged).
    One thread is the default: the batches here are small, and on a shared 2-core machine the
    thread pool's synchronisation made them 10-25x slower in our measurements."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _box_attack(pb, cfg: VerifyConfig, deadline: float | None):
    """PGD from a random point of each of k boxes at once (20 steps), for use inside branch and bound."""
    from certprune.verifiers.attack import pgd

    rng = np.random.default_rng(cfg.seed + 1)

    def run(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        starts = lo + rng.random(lo.shape) * (hi - lo)
        xs, _ = pgd(pb.run32, pb.prop, lo, hi, starts, 20, pb.int_mask, deadline)
        return xs
    return run


def _root_attack(pb, cfg: VerifyConfig, deadline: float | None):
    """A fresh round of output-diversified PGD on the whole region per call (seed advanced each
    time), for ReLU branch and bound, whose domains all share the root box; None when disabled."""
    from certprune.verifiers.attack import odi_pgd

    if not cfg.attack_odi_restarts:
        return None
    rng = np.random.default_rng(cfg.seed + 2)

    def run() -> np.ndarray:
        xs, ms = odi_pgd(pb.run32, pb.prop, pb.lo, pb.hi, cfg.attack_odi_restarts, 20, cfg.attack_odi_steps, rng,
                         pb.int_mask, deadline)
        return xs[np.argsort(ms)[:8]]
    return run


def _timed_out(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _unknown(stats: dict, phase: str, reason: str = "timeout") -> Result:
    stats["phase"] = phase
    stats.setdefault("reason", reason)
    return Result(Verdict.UNKNOWN, stats=stats, message=f"undecided after {phase}: {reason}")


def check_shapes(prop: Property, input_shape: tuple[int, ...], num_outputs: int) -> None:
    """Raise ShapeMismatchError when the region or the output constraints do not fit the model."""
    if prop.region.dim != int(np.prod(input_shape)):
        raise ShapeMismatchError(
            f"input region has {prop.region.dim} inputs (shape {prop.region.shape}) but the model expects "
            f"{int(np.prod(input_shape))} (shape {tuple(input_shape)})")
    prop.check_outputs(num_outputs)

