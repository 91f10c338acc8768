# Writes a deeper copy of a small f32 Llama directory: layers L .. N−1 are layer (i mod L)'s
# tensors scaled by 1 − 0.05·(i div L), so every layer differs. The pipeline tests need more
# decoder layers than ranks; the demo's tiny model has 2.
#   /usr/bin/python3 deepen_model.py SRC DST LAYERS
import json, os, re, shutil, struct, sys
src, dst, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
for f in os.listdir(src):
    if f not in ("model.safetensors", "config.json"):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
with open(os.path.join(src, "config.json")) as f:
    config = json.load(f)
base = config["num_hidden_layers"]
config["num_hidden_layers"] = layers
with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
with open(os.path.join(src, "model.safetensors"), "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    data = f.read()
tensors = {}
for name, v in header.items():
    if name == "__metadata__":
        continue
    assert v["dtype"] == "F32", (name, v["dtype"])
    b, e = v["data_offsets"]
    tensors[name] = (v["shape"], struct.unpack(f"<{(e - b) // 4}f", data[b:e]))
out = {}
for name, (shape, values) in tensors.items():
    m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
    if not m:
        out[name] = (shape, values)
        continue
    for i in range(int(m.group(1)), layers, base):
        scale = 1.0 - 0.05 * (i // base)
        out[f"model.layers.{i}.{m.group(2)}"] = (shape, [x * scale for x in values])
offset, new_header, blobs = 0, {}, []
for name in sorted(out):
    shape, values = out[name]
    blob = struct.pack(f"<{len(values)}f", *values)
    new_header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
h = json.dumps(new_header).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
