// `fitlm vision-preprocess --model-dir DIR IMAGE... [--out F.safetensors]`: runs images through
// the Qwen-VL image pipeline (vision/) as the model directory's preprocessor_config.json says,
// prints what each image becomes, and writes pixel_values and image_grid_thw as HF's processor
// returns them -- to check fitlm's inputs against transformers, or to see what the model sees.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "fitlm/cli/command_registry.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/vision/image_load.h"
#include "fitlm/vision/preprocess.h"

namespace fitlm::cli {
namespace {

struct VisionPreprocessOptions {
  std::string model_dir, out, processor = "torchvision";
  std::vector<std::string> images;
  bool save_resized = false;
};

int run_vision_preprocess(const VisionPreprocessOptions& o) {
  const vision::VisionPreprocessConfig config = vision::load_vision_preprocess_config(o.model_dir);
  const vision::ResizeBackend backend =
      o.processor == "pil" ? vision::ResizeBackend::kPil : vision::ResizeBackend::kTorchvision;
  fmt::print("{}: patch {}, merge {}, temporal {}, pixels [{}, {}], {} processor\n", o.model_dir,
             config.patch_size, config.merge_size, config.temporal_patch_size, config.min_pixels,
             config.max_pixels, o.processor);
  vision::PreprocessedBatch batch;
  std::vector<vision::RgbImage> resized;
  for (const std::string& path : o.images) {
    const vision::RgbImage image = vision::load_image(path);
    vision::PreprocessedImage p = vision::preprocess_image(image, config, backend, path);
    const int64_t tokens = p.grid.t * p.grid.h * p.grid.w / (config.merge_size * config.merge_size);
    fmt::print("{}: {}x{} -> {}x{}, grid_thw [{}, {}, {}], {} patches, {} image tokens\n", path,
               image.width, image.height, p.resized.width, p.resized.height, p.grid.t, p.grid.h,
               p.grid.w, p.grid.t * p.grid.h * p.grid.w, tokens);
    batch.append(p);
    if (o.save_resized) resized.push_back(std::move(p.resized));
  }
  if (o.out.empty()) return 0;
  std::vector<int64_t> grid;
  for (const vision::ImageGridThw& g : batch.grids) grid.insert(grid.end(), {g.t, g.h, g.w});
  io::SafetensorsWriter w;
  w.add_f32("pixel_values", io::StDType::kF32, {batch.rows, batch.features},
            batch.pixel_values.data());
  w.add_bytes("image_grid_thw", io::StDType::kI64, {static_cast<int64_t>(batch.grids.size()), 3},
              grid.data());
  for (size_t i = 0; i < resized.size(); ++i)
    w.add_bytes(fmt::format("resized_images.{}", i), io::StDType::kU8,
                {resized[i].height, resized[i].width, 3}, resized[i].pixels.data());
  w.set_metadata("processor", o.processor);
  w.write(o.out);
  fmt::print("{}: pixel_values [{}, {}] f32, image_grid_thw [{}, 3] i64\n", o.out, batch.rows,
             batch.features, batch.grids.size());
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<VisionPreprocessOptions>();
  app.add_option("--model-dir", o->model_dir,
                 "Model directory with a preprocessor_config.json (or the file itself)")
      ->required();
  app.add_option("images", o->images, "Image files: JPEG, PNG or WebP (told apart by content)")
      ->required();
  app.add_option("--out", o->out, "Write pixel_values and image_grid_thw to this safetensors file");
  app.add_option("--processor", o->processor,
                 "Which HF processor to reproduce: torchvision (transformers 5's default, "
                 "Qwen2VLImageProcessor) or pil (Qwen2VLImageProcessorPil, backend=\"pil\")")
      ->check(CLI::IsMember({"torchvision", "pil"}))
      ->capture_default_str();
  app.add_flag("--save-resized", o->save_resized,
               "Also write each resized image as resized_images.N (uint8 [H, W, 3])");
  app.footer(R"(What happens to each image, as transformers 5.17 does it:
  1. decode, apply the EXIF orientation, convert to 8-bit RGB (alpha dropped, as PIL's
     convert("RGB"); load_image in transformers)
  2. smart_resize: both sides to multiples of patch_size * merge_size, the area within
     [min_pixels, max_pixels] (or size.shortest_edge / longest_edge), aspect ratio kept;
     refused above an aspect ratio of 200
  3. bicubic resize with antialiasing: torchvision's uint8 fixed-point kernel by default, or
     PIL's with --processor pil
  4. rescale by rescale_factor (1/255) and normalise with image_mean / image_std
  5. patchify: each temporal_patch_size x patch x patch block is one row of
     3 * temporal_patch_size * patch^2 values; grid_thw = [1, H / patch, W / patch]; the model
     sees grid_h * grid_w / merge_size^2 image tokens
Checked against transformers' own processors (tests/vision): pixel_values of both paths
equal theirs bit for bit in float32.
Example: fitlm vision-preprocess --model-dir Qwen2.5-VL-7B-Instruct cat.jpg --out px.safetensors)");
  return [o] { return run_vision_preprocess(*o); };
}

CommandRegistration reg{"vision-preprocess",
                        "Turn images into a Qwen-VL model's pixel_values and image_grid_thw",
                        setup};

}  // namespace
}  // namespace fitlm::cli
