# The tensors of two F32 safetensors files agree to f32 rounding: the same names, and for each
# tensor max|a − b| / max|a| below the bound (default 1e-4). Used by the multi-rank tests, which
# check N ranks against one process with N× the accumulation. A or B may be a model directory:
# its model.safetensors.index.json's shards (each tensor in the shard the index names), or its
# model.safetensors.
#   /usr/bin/python3 compare_safetensors.py A B [bound]
import json, os, struct, sys
def load(path):
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        if not os.path.exists(index):
            return load_file(os.path.join(path, "model.safetensors"))
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            tensors = load_file(os.path.join(path, shard))
            assert all(weight_map.get(k) == shard for k in tensors), (shard, sorted(tensors)[:3])
            out.update(tensors)
        assert out.keys() == weight_map.keys(), sorted(set(weight_map) ^ set(out))[:3]
        return out
    return load_file(path)
def load_file(path):
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
