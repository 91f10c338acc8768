#!/usr/bin/env python3
"""Cross-check fitlm's safetensors reader against files written independently of fitlm.

Python writes the files by hand from the format spec (the `safetensors` package is not
installed, and our own writer must not be the reference), with values from torch (bf16/f16
rounding done by torch). `fitlm safetensors-info --json` then reports dtype, shape and the fp64
sum of each tensor, which must match torch's. The reverse direction (fitlm writes, fitlm reads)
is covered by the gtest round trips.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

FITLM = os.environ["FITLM_BIN"]

# torch dtype -> (safetensors dtype string, torch dtype to reinterpret as for raw bytes)
DTYPES = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)  # numpy has no bf16; the bit pattern is what we store
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None, pad=True, shuffle_header=True):
    """tensors: list of (name, torch tensor), packed in list order."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if shuffle_header:  # key order in the header need not follow the data order
        header = dict(reversed(list(header.items())))
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if pad:
        text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def fitlm_info(path):
    r = subprocess.run([FITLM, "safetensors-info", str(path), "--json"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: fitlm safetensors-info {path} exited {r.returncode}: {r.stderr}")
    return {t["name"]: t for t in json.loads(r.stdout)["tensors"]}, json.loads(r.stdout)


def check(tensors, info):
    failures = 0
    for name, t in tensors:
        got = info.get(name)
        if got is None:
            print(f"FAIL {name}: missing from fitlm output")
            failures += 1
            continue
        want_sum = t.double().sum().item()
        tol = 1e-9 * max(1.0, t.double().abs().sum().item())  # summation order differs
        ok = (got["dtype"] == DTYPES[t.dtype] and got["shape"] == list(t.shape)
              and got["bytes"] == len(tensor_bytes(t)) and got["sum"] is not None
              and abs(got["sum"] - want_sum) <= tol)
        print(f"{'ok  ' if ok else 'FAIL'} {name:14s} {got['dtype']:5s} {got['shape']} "
              f"sum fitlm={got['sum']!r} torch={want_sum!r}")
        failures += not ok
    return failures


def main():
    torch.manual_seed(0)
    tensors = [
        ("w.f32", torch.randn(7, 13)),
        ("w.bf16", (torch.randn(4, 33) * 5).to(torch.bfloat16)),
        ("w.f16", (torch.randn(3, 5, 7) * 100).to(torch.float16)),  # odd numel, odd offsets
        ("scalar", torch.tensor(3.25)),
        ("empty", torch.zeros(0, 4)),
        ("rank5", torch.randn(2, 3, 2, 1, 3).to(torch.bfloat16)),
        ("ids", torch.randint(-10**12, 10**12, (6,), dtype=torch.int64)),
        ("i32", torch.randint(-1000, 1000, (5,), dtype=torch.int32)),
        ("i8", torch.randint(-128, 127, (9,), dtype=torch.int8)),
        ("u8", torch.randint(0, 255, (3,), dtype=torch.uint8)),
        ("mask", torch.tensor([True, False, True])),
        ("tail.f32", torch.randn(11)),  # after odd-sized tensors: unaligned in the mapping
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        for pad in (True, False):
            p = os.path.join(d, f"single_{pad}.safetensors")
            write_safetensors(p, tensors, metadata={"format": "pt", "who": "torch"}, pad=pad)
            info, full = fitlm_info(p)
            failures += check(tensors, info)
            if full["metadata"] != {"format": "pt", "who": "torch"}:
                print(f"FAIL metadata: {full['metadata']}")
                failures += 1

        # A sharded checkpoint as transformers' save_pretrained lays it out.
        shard_dir = os.path.join(d, "sharded")
        os.mkdir(shard_dir)
        shards = [tensors[:4], tensors[4:9], tensors[9:]]
        weight_map = {}
        for i, part in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(os.path.join(shard_dir, fname), part, metadata={"format": "pt"})
            weight_map.update({name: fname for name, _ in part})
        with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
        info, _ = fitlm_info(shard_dir)
        failures += check(tensors, info)
        files = {info[name]["file"] for name in weight_map}
        if len(files) != 3:
            print(f"FAIL shards seen: {files}")
            failures += 1

        # A malformed file is a clean input error (exit 2) that names the file and tensor.
        bad = os.path.join(d, "bad.safetensors")
        hdr = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
        with open(bad, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
        r = subprocess.run([FITLM, "safetensors-info", bad, "--json"], capture_output=True,
                           text=True)
        want = "tensor 'x': data_offsets [0, 16] run past the end of the data buffer"
        if r.returncode != 2 or want not in r.stderr or "bad.safetensors" not in r.stderr:
            print(f"FAIL malformed: rc={r.returncode} stderr={r.stderr!r}")
            failures += 1
        else:
            print(f"ok   malformed file: {r.stderr.strip()}")

    if failures:
        sys.exit(f"{failures} check(s) failed")
    print("all safetensors cross-checks passed")


if __name__ == "__main__":
    main()
