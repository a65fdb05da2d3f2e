"""Run mnist_fc instances under several verify configurations, one after the other (interleaved
per instance), and print result word, seconds, domains bounded and queue left.

Usage: python experiments/mnistbab/compare_modes.py CAP "net:prop,..." "name=k=v;k=v" ...
"""
import sys, time, json
from certprune.verifiers.instance import decide_instance

D = "/work/shared/data/vnncomp/mnist_fc"
cap = float(sys.argv[1])
insts = [x.split(":") for x in sys.argv[2].split(",")]
configs = []
for spec in sys.argv[3:]:
    name, _, rest = spec.partition("=")
    cfg = {"threads": 1}
    for kv in filter(None, rest.split(";")):
        k, v = kv.split("=", 1)
        cfg[k] = eval(v)
    configs.append((name, cfg))
for net, prop in insts:
    for name, cfg in configs:
        t0, c0 = time.monotonic(), time.process_time()
        out = decide_instance(f"{D}/onnx/mnist-net_{net}.onnx.gz", f"{D}/vnnlib/{prop}.vnnlib.gz", cap, config=cfg)
        st = out.stats["verify"][-1] if out.stats.get("verify") else {}
        print(json.dumps({"net": net, "prop": prop, "config": name, "word": out.word,
                          "seconds": round(time.monotonic() - t0, 1),
                          "cpu_seconds": round(time.process_time() - c0, 1), "domains": st.get("domains"),
                          "queue_left": st.get("queue_left"), "time_bound": round(st.get("time_bound", 0), 1),
                          "time_refine": round(st.get("time_refine", 0), 1), "time_milp": round(st.get("time_milp", 0), 1),
                          "code": __import__("certprune").__file__}),
              flush=True)
