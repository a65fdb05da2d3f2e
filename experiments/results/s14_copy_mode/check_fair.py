import os, sys, numpy as np
import certprune
from certprune.datasets.tabular import get_schema
from certprune.fairness_spec import FairnessSpec
from certprune.verifiers import fairness_bab
from certprune.verifiers.fairness import audit_fairness, EngineFactory, _prepare_model
from certprune.verifiers.fairness_bab import BabConfig
from certprune.semantics import Semantics
model, sem = sys.argv[1], sys.argv[2]
spec = FairnessSpec.from_schema(get_schema("adult"), ("race",), name="adult")
path = os.path.join(os.environ.get("CERTPRUNE_DATA", "../shared/data"), "fairness", "fairify_models", f"{model}.h5")
boxes = []
orig = fairness_bab.TwinBab._account
def spy(self, u, fair, unfair, st):
    for k, v in np.argwhere(fair & u.open):
        if len(boxes) < 20000: boxes.append((u.lo[k].copy(), u.hi[k].copy(), int(v)))
    return orig(self, u, fair, unfair, st)
fairness_bab.TwinBab._account = spy
res = audit_fairness(certprune.load_model(path), spec, None, timeout=15, progress=False, samples=0, semantics=sem)
exact, module, _ = _prepare_model(certprune.load_model(path))
eng = EngineFactory(exact, module, spec, BabConfig(), Semantics(sem))()
rng = np.random.default_rng(0)
pick = rng.choice(len(boxes), size=min(3000, len(boxes)), replace=False)
X = []
for i in pick:
    lo, hi, v = boxes[i]
    for _ in range(5):
        x = rng.integers(lo.astype(np.int64), hi.astype(np.int64) + 1).astype(np.float64)
        x[eng.prot] = eng.values[v]
        X.append(x)
X = np.array(X)
d0 = eng.decide_points(X)
flips = 0
for w in range(len(eng.values)):
    Xw = X.copy(); Xw[:, eng.prot] = eng.values[w]
    flips += int((eng.decide_points(Xw) != d0).sum())
print(model, sem, "fair boxes", len(boxes), "points", len(X), "flips", flips)
