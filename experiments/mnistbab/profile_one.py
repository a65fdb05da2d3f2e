"""Profile one mnist_fc instance: cProfile of decide_instance plus the B&B progress trace.

Usage: python experiments/mnistbab/profile_one.py NET PROP TIMEOUT [key=value config ...]
"""
import cProfile, io, pstats, sys, time, json
from certprune.verifiers.instance import decide_instance

D = "/work/shared/data/vnncomp/mnist_fc"
net, prop, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = {"threads": 1}
for kv in sys.argv[4:]:
    k, v = kv.split("=")
    cfg[k] = type(eval(v))(eval(v))
trace = []
t0 = time.monotonic()
def prog(ev):
    if ev.get("phase") == "bab" and ev.get("processed"):
        trace.append((round(time.monotonic() - t0, 1), ev["processed"], ev["domains"], ev["bound"]))
    elif ev.get("phase") != "bab":
        trace.append((round(time.monotonic() - t0, 1), ev.get("phase")))
pr = cProfile.Profile()
pr.enable()
out = decide_instance(f"{D}/onnx/mnist-net_{net}.onnx.gz", f"{D}/vnnlib/{prop}.vnnlib.gz", timeout, config=cfg, progress=prog)
pr.disable()
print("RESULT", out.word, round(time.monotonic() - t0, 1))
st = out.stats["verify"][-1] if out.stats.get("verify") else {}
print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in st.items() if not isinstance(v, (list, dict))})
for row in trace[:: max(1, len(trace) // 25)]:
    print(row)
if trace: print(trace[-1])
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(45)
print(s.getvalue())
