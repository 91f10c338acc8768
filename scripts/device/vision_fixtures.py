"""Reference outputs of Hugging Face's Qwen2-VL image processor for tests/vision/fixtures.

Runs where transformers 5.x is installed (the device machine; the CI machine has no transformers):
  python3 scripts/device/vision_fixtures.py OUT_DIR
It generates small images deterministically (sizes, aspect ratios, PNG gray/gray16/RGB16/RGBA/LA/
palette/1-bit, JPEG RGB/gray/EXIF-rotated, WebP lossy/lossless-alpha), loads each one as HF does
(transformers.image_utils.load_image: EXIF transpose, convert("RGB")) and runs the processor that
AutoImageProcessor picks by default (the torchvision backend) and the PIL one. OUT_DIR receives
  vision_fixtures.safetensors.gz  (gzip) case<i>.file (the encoded image), case<i>.<path>.pixel_values,
                               case<i>.<path>.image_grid_thw
  vision_fixtures.json         per case: name, config, decoded-RGB checksum (FNV-1a 64), the
                               processor classes, and the error text where HF refuses an image
  hf_sources.txt               the HF/torchvision source the C++ code reproduces, for the record
Copy the first two into tests/vision/fixtures/."""
import gzip
import inspect
import io
import json
import os
import struct
import sys
import tempfile

import numpy as np
import PIL
import torch
import torchvision
import transformers
from PIL import Image
from transformers import AutoImageProcessor
from transformers.image_utils import load_image

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The hub's Qwen2.5-VL preprocessor_config.json, and two small-patch variants that keep the
# fixtures small (the arithmetic is the same code with other numbers).
CONFIGS = {
    "qwen25_hub": {
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "resample": 3,
        "rescale_factor": 0.00392156862745098, "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor"},
    "small": {
        "min_pixels": 256, "max_pixels": 768, "patch_size": 4, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"},
    # Qwen3-VL style: size dict instead of min/max_pixels, patch 16, mean = std = 0.5.
    "qwen3_size": {
        "size": {"shortest_edge": 1024, "longest_edge": 4096}, "patch_size": 16,
        "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen3VLProcessor"},
}


def smooth(rng, h, w, c):
    """A photo-like random image: bilinear-upsampled coarse noise plus fine noise (compresses
    well, unlike white noise, and has edges that a resize filter sees)."""
    ch, cw = max(2, h // 8), max(2, w // 8)
    coarse = rng.uniform(0, 255, size=(ch, cw, c))
    ys = np.linspace(0, ch - 1, h)
    xs = np.linspace(0, cw - 1, w)
    y0 = np.floor(ys).astype(int).clip(0, ch - 2)
    x0 = np.floor(xs).astype(int).clip(0, cw - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    cc = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    img = (a * (1 - fx) + b * fx) * (1 - fy) + (cc * (1 - fx) + d * fx) * fy
    img = img + rng.normal(0, 12, size=img.shape)
    return img.clip(0, 255)


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_cases():
    rng = np.random.RandomState(1234)
    cases = []

    def add(name, data, config="small"):
        cases.append({"name": name, "data": data, "config": config})

    u8 = lambda a: a.round().astype(np.uint8)  # noqa: E731
    add("rgb_png_97x61", encode(Image.fromarray(u8(smooth(rng, 61, 97, 3))), "PNG"))
    add("rgb_png_tall_23x150", encode(Image.fromarray(u8(smooth(rng, 150, 23, 3))), "PNG"))
    add("rgb_png_upscale_13x11", encode(Image.fromarray(u8(smooth(rng, 11, 13, 3))), "PNG"))
    add("rgb_png_exact_32x16", encode(Image.fromarray(u8(smooth(rng, 16, 32, 3))), "PNG"))
    add("gray_png_80x64", encode(Image.fromarray(u8(smooth(rng, 64, 80, 1))[:, :, 0], "L"), "PNG"))
    rgba = u8(smooth(rng, 90, 70, 4))
    add("rgba_png_70x90", encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    la = u8(smooth(rng, 50, 50, 2))
    add("la_png_50x50", encode(Image.fromarray(la, "LA"), "PNG"))
    pal = Image.fromarray(u8(smooth(rng, 48, 64, 3))).quantize(colors=37)
    add("palette_trns_png_64x48", encode(pal, "PNG", transparency=5))
    g16 = (smooth(rng, 60, 40, 1)[:, :, 0] * 1.6).astype(np.uint16)  # 0..408: some clip at 255
    add("gray16_png_40x60", encode(Image.fromarray(g16, "I;16"), "PNG"))
    bits = (rng.uniform(size=(17, 33)) > 0.5)
    add("bilevel_png_33x17", encode(Image.fromarray(bits), "PNG"))
    add("rgb_jpeg_120x80", encode(Image.fromarray(u8(smooth(rng, 80, 120, 3))), "JPEG",
                                  quality=90))
    add("rgb_jpeg_444_300x200", encode(Image.fromarray(u8(smooth(rng, 200, 300, 3))), "JPEG",
                                       quality=85, subsampling=0))
    add("gray_jpeg_64x64", encode(Image.fromarray(u8(smooth(rng, 64, 64, 1))[:, :, 0], "L"),
                                  "JPEG", quality=90))
    for orientation in (3, 6, 8, 5):
        exif = Image.Exif()
        exif[0x0112] = orientation
        img = Image.fromarray(u8(smooth(rng, 36, 60, 3)))
        add(f"exif{orientation}_jpeg_60x36", encode(img, "JPEG", quality=90, exif=exif.tobytes()))
    add("webp_lossy_90x70", encode(Image.fromarray(u8(smooth(rng, 70, 90, 3))), "WEBP",
                                   quality=80))
    add("webp_lossless_rgba_60x40", encode(Image.fromarray(u8(smooth(rng, 40, 60, 4)), "RGBA"),
                                           "WEBP", lossless=True))
    add("hub_rgb_png_40x30", encode(Image.fromarray(u8(smooth(rng, 30, 40, 3))), "PNG"),
        "qwen25_hub")
    add("qwen3_rgb_png_50x70", encode(Image.fromarray(u8(smooth(rng, 70, 50, 3))), "PNG"),
        "qwen3_size")
    # Refused by smart_resize: a side under the factor, an aspect ratio over 200.
    add("narrow_png_5x40", encode(Image.fromarray(u8(smooth(rng, 40, 5, 3))), "PNG"))
    add("aspect_png_1x201", encode(Image.fromarray(u8(smooth(rng, 201, 1, 3))), "PNG"))
    return cases


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    names = {np.uint8: "U8", np.float32: "F32", np.int64: "I64"}
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        raw = arr.tobytes()
        header[name] = {"dtype": names[arr.dtype.type], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    # gzip: the float pixel values take a few distinct values per channel and repeat for the
    # temporal patch, so the committed fixture shrinks several times (tests read it with zlib).
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def processors(config):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(config, f)
    out = {"fast": AutoImageProcessor.from_pretrained(d)}
    # transformers 5 names the PIL path a backend; 4.x took use_fast=False.
    for kw in ({"backend": "pil"}, {"use_fast": False}):
        try:
            p = AutoImageProcessor.from_pretrained(d, **kw)
        except Exception as e:  # noqa: BLE001
            print(f"slow processor with {kw}: {e!r}")
            continue
        if type(p) is not type(out["fast"]):
            out["slow"] = p
            break
    return out


def dump_sources(path):
    import torchvision.transforms.v2.functional as tvF

    from transformers import image_utils, image_transforms
    mods = [image_utils.load_image, image_transforms.convert_to_rgb, tvF.resize_image]
    try:
        from transformers import image_processing_backends as b
        mods += [b.TorchvisionBackend._rescale_and_normalize,
                 b.TorchvisionBackend._fuse_mean_std_and_rescale_factor, b.TorchvisionBackend.resize,
                 image_transforms.resize, image_transforms.rescale, image_transforms.normalize]
    except Exception as e:  # noqa: BLE001
        print("no image_processing_backends:", e)
    import transformers.models.qwen2_vl as q
    with open(path, "w") as f:
        f.write(f"transformers {transformers.__version__} torch {torch.__version__} torchvision "
                f"{torchvision.__version__} PIL {PIL.__version__} numpy {np.__version__} cpu "
                f"{torch.backends.cpu.get_cpu_capability()}\n")
        for m in mods:
            try:
                f.write(f"\n##### {m.__module__}.{m.__qualname__}\n{inspect.getsource(m)}")
            except Exception as e:  # noqa: BLE001
                f.write(f"\n##### {m}: {e!r}\n")
        qdir = os.path.dirname(q.__file__)
        for name in sorted(os.listdir(qdir)):
            if name.startswith("image_processing"):
                with open(os.path.join(qdir, name)) as src:
                    f.write(f"\n##### file {name}\n{src.read()}")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    dump_sources(os.path.join(out_dir, "hf_sources.txt"))
    procs = {name: processors(cfg) for name, cfg in CONFIGS.items()}
    tensors, manifest = {}, {"versions": {
        "transformers": transformers.__version__, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "PIL": PIL.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "configs": CONFIGS, "processors": {}, "cases": []}
    for cname, ps in procs.items():
        manifest["processors"][cname] = {k: type(v).__module__ + "." + type(v).__name__
                                         for k, v in ps.items()}
    for i, case in enumerate(make_cases()):
        tensors[f"case{i}.file"] = np.frombuffer(case["data"], dtype=np.uint8)
        entry = {"name": case["name"], "config": case["config"]}
        with tempfile.NamedTemporaryFile(suffix=".img", delete=False) as f:
            f.write(case["data"])
        img = load_image(f.name)
        rgb = np.asarray(img)
        entry["rgb_shape"] = list(rgb.shape)
        entry["rgb_fnv1a64"] = fnv1a64(rgb.tobytes())
        entry["mode_opened"] = Image.open(io.BytesIO(case["data"])).mode
        for path, proc in procs[case["config"]].items():
            try:
                r = proc(images=[img], return_tensors="pt")
            except Exception as e:  # noqa: BLE001
                entry[f"{path}_error"] = str(e)
                continue
            tensors[f"case{i}.{path}.pixel_values"] = r["pixel_values"].numpy().astype(np.float32)
            tensors[f"case{i}.{path}.image_grid_thw"] = r["image_grid_thw"].numpy().astype(np.int64)
            entry[f"{path}_grid"] = r["image_grid_thw"].tolist()
        print(json.dumps(entry))
        manifest["cases"].append(entry)
    write_safetensors(os.path.join(out_dir, "vision_fixtures.safetensors.gz"), tensors)
    with open(os.path.join(out_dir, "vision_fixtures.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest["versions"]), json.dumps(manifest["processors"]))


if __name__ == "__main__":
    main()
