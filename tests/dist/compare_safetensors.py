# The tensors of two F32 safetensors files agree to f32 rounding: the same names, and for each
# tensor max|a − b| / max|a| below the bound (default 1e-4). Used by the multi-rank tests, which
# check N ranks against one process with N× the accumulation.
#   /usr/bin/python3 compare_safetensors.py A B [bound]
import json, struct, sys
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        b, e = v["data_offsets"]
        out[k] = struct.unpack(f"<{(e - b) // 4}f", data[b:e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), (sorted(a)[:3], sorted(b)[:3])
worst = 0.0
for k in a:
    scale = max(max(abs(x) for x in a[k]), 1e-30)
    worst = max(worst, max(abs(x - y) for x, y in zip(a[k], b[k])) / scale)
print(f"{len(a)} tensors, worst max|diff|/max|x| = {worst:.2e}")
bound = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
assert worst < bound, (worst, bound)
