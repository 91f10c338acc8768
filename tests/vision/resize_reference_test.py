"""fitlm vision-preprocess against the references Debian ships, on the CPU (CI has no
transformers; the device fixtures in vision_fixtures_test.cpp compare with transformers itself):

- --processor pil: the resized image equals PIL's Image.resize(BICUBIC) bit for bit, and
  pixel_values equal the PIL processor's NumPy arithmetic (rescale in float64 then float32,
  normalise in float32, HF's reshape + transpose) bit for bit;
- --processor torchvision: the resized image is within 1 level of torch's float antialiased
  bicubic (interpolate(float, mode="bicubic", antialias=True), one axis at a time, each pass
  clamped and rounded to uint8 as the integer kernel keeps its intermediate), and equal on at
  least 99% of the values: what differs is the int16 rounding of the weights. Debian's torch
  1.13 has no uint8 antialiased bicubic; that integer path is checked bit for bit against
  transformers' fixtures (vision_fixtures_test.cpp).
Random smooth images of several sizes, upscaled, downscaled and one axis kept."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    kinds = {"F32": np.float32, "I64": np.int64, "U8": np.uint8}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    return out


def smooth_image(rng, h, w):
    coarse = rng.uniform(0, 255, size=(max(2, h // 6), max(2, w // 6), 3)).astype(np.float32)
    t = torch.from_numpy(coarse).permute(2, 0, 1)[None]
    up = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    img = up.numpy() + rng.normal(0, 20, size=(h, w, 3))
    return img.clip(0, 255).round().astype(np.uint8)


def hf_pil_pixel_values(resized, cfg):
    """Qwen2VLImageProcessorPil's rescale, normalize and patchify (transformers 5.17)."""
    x = (resized.astype(np.float64) * (1 / 255)).astype(np.float32).transpose(2, 0, 1)
    mean = np.array(cfg["image_mean"], dtype=np.float32)[:, None, None]
    std = np.array(cfg["image_std"], dtype=np.float32)[:, None, None]
    x = (x - mean) / std
    p, m, t = cfg["patch_size"], cfg["merge_size"], cfg["temporal_patch_size"]
    c, h, w = x.shape
    x = np.repeat(x[None], t, axis=0)
    gh, gw = h // p, w // p
    x = x.reshape(1, t, c, gh // m, m, p, gw // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gh * gw, c * t * p * p)


def main():
    rng = np.random.RandomState(5)
    cfg = {"patch_size": 4, "merge_size": 2, "temporal_patch_size": 2,
           "image_mean": [0.48145466, 0.4578275, 0.40821073],
           "image_std": [0.26862954, 0.26130258, 0.27577711]}
    # (height, width, min_pixels, max_pixels): down both, up both, down a lot, one axis kept.
    cases = [(61, 97, 256, 1024), (13, 11, 1024, 4096), (200, 150, 64, 640), (40, 99, 64, 4096),
             (33, 80, 64, 2560), (150, 23, 256, 2048)]
    worst, exact, total, failures = 0, 0, 0, []
    with tempfile.TemporaryDirectory() as d:
        for i, (h, w, lo, hi) in enumerate(cases):
            img = smooth_image(rng, h, w)
            path = os.path.join(d, f"img{i}.png")
            Image.fromarray(img).save(path)
            mdir = os.path.join(d, f"m{i}")
            os.makedirs(mdir)
            with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
                json.dump(cfg | {"min_pixels": lo, "max_pixels": hi}, f)
            for proc in ("pil", "torchvision"):
                out = os.path.join(d, f"out{i}{proc}.safetensors")
                subprocess.run([FITLM, "vision-preprocess", "--model-dir", mdir, path, "--out", out,
                                "--processor", proc, "--save-resized"], check=True,
                               stdout=subprocess.DEVNULL)
                st = read_safetensors(out)
                got = st["resized_images.0"]
                rh, rw = got.shape[:2]
                assert (rh, rw) != (h, w), (rh, rw)
                if proc == "pil":
                    want = np.asarray(Image.fromarray(img).resize((rw, rh), Image.BICUBIC))
                    if not np.array_equal(got, want):
                        failures.append(f"case {i} {h}x{w}->{rh}x{rw}: PIL resize differs on "
                                        f"{int((got != want).sum())} values")
                    pv = hf_pil_pixel_values(want, cfg)
                    if not np.array_equal(st["pixel_values"], pv):
                        failures.append(f"case {i}: pixel_values differ from the PIL processor's")
                    if st["image_grid_thw"].tolist() != [[1, rh // 4, rw // 4]]:
                        failures.append(f"case {i}: grid {st['image_grid_thw'].tolist()}")
                else:
                    # Width, then height, each pass rounded to uint8 as the integer kernel
                    # keeps its intermediate: what is left is the int16 weight rounding.
                    t = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()
                    for size in ((h, rw), (rh, rw)):
                        t = F.interpolate(t, size=size, mode="bicubic", antialias=True,
                                          align_corners=False).clamp(0, 255).round()
                    ref = t[0].permute(1, 2, 0).to(torch.uint8).numpy()
                    diff = np.abs(got.astype(int) - ref.astype(int))
                    worst = max(worst, int(diff.max()))
                    exact += int((diff == 0).sum())
                    total += diff.size
        # The command itself: two images are one batch (rows end to end, a grid row each),
        # and a truncated file is an input error (exit 2) that names it.
        out = os.path.join(d, "batch.safetensors")
        subprocess.run([FITLM, "vision-preprocess", "--model-dir", os.path.join(d, "m0"),
                        os.path.join(d, "img0.png"), os.path.join(d, "img1.png"), "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        st = read_safetensors(out)
        grids = st["image_grid_thw"].tolist()
        rows = sum(t * h * w for t, h, w in grids)
        if len(grids) != 2 or st["pixel_values"].shape != (rows, 3 * 2 * 4 * 4):
            failures.append(f"batch: grids {grids}, pixel_values {st['pixel_values'].shape}")
        cut = os.path.join(d, "cut.png")
        with open(os.path.join(d, "img0.png"), "rb") as f, open(cut, "wb") as g:
            g.write(f.read()[:500])
        r = subprocess.run([FITLM, "vision-preprocess", "--model-dir", os.path.join(d, "m0"), cut],
                           capture_output=True, text=True)
        if r.returncode != 2 or f"[vision] {cut}: corrupt or truncated PNG" not in r.stderr:
            failures.append(f"truncated file: exit {r.returncode}, stderr {r.stderr!r}")
    print(f"torchvision path vs torch float: max |diff| {worst} levels, {exact}/{total} equal")
    if worst > 1:
        failures.append(f"torch float reference differs by {worst} levels (allowed 1)")
    if exact < 0.99 * total:
        failures.append(f"only {exact}/{total} values equal torch's float path (want 99%)")
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
