#include "fitlm/vision/preprocess_config.h"

#include <algorithm>
#include <string_view>

#include "fitlm/core/error.h"

namespace fitlm::vision {
namespace {

constexpr const char* kComponent = "vision";
using json_input::Json;

std::string found(const Json& v) {
  return clip(v.dump());
}

int64_t read_int(const Json& obj, std::string_view key, const std::string& source, int64_t def,
                 int64_t min_value, std::string_view where = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_number_integer() || it->get<int64_t>() < min_value)
    throw_input_error(kComponent, "{}: field '{}{}': expected an integer >= {}, found {}", source,
                      where, key, min_value, found(*it));
  return it->get<int64_t>();
}

bool read_bool(const Json& obj, std::string_view key, const std::string& source, bool def) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_boolean())
    throw_input_error(kComponent, "{}: field '{}': expected true or false, found {}", source, key,
                      found(*it));
  return it->get<bool>();
}

// image_mean / image_std: three numbers (one a channel), or one number for all three.
std::array<double, 3> read_channels(const Json& obj, std::string_view key,
                                    const std::string& source, std::array<double, 3> def,
                                    bool positive) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  std::array<double, 3> v{};
  if (it->is_number()) {
    v.fill(it->get<double>());
  } else if (it->is_array() && it->size() == 3 &&
             std::all_of(it->begin(), it->end(), [](const Json& x) { return x.is_number(); })) {
    for (size_t i = 0; i < 3; ++i) v[i] = (*it)[i].get<double>();
  } else {
    throw_input_error(kComponent, "{}: field '{}': expected 3 numbers (R, G, B), found {}", source,
                      key, found(*it));
  }
  if (positive && !(v[0] > 0 && v[1] > 0 && v[2] > 0))
    throw_input_error(kComponent, "{}: field '{}': expected numbers > 0, found {}", source, key,
                      found(*it));
  return v;
}

}  // namespace

VisionPreprocessConfig parse_vision_preprocess_config(const Json& j, const std::string& source) {
  if (!j.is_object())
    throw_input_error(kComponent, "{}: expected a JSON object, found {}", source, found(j));
  VisionPreprocessConfig c;
  if (auto it = j.find("image_processor_type"); it != j.end() && !it->is_null()) {
    // Qwen2.5-VL's hub file says Qwen2VLImageProcessor, Qwen3-VL's Qwen2VLImageProcessorFast.
    if (!it->is_string() || it->get<std::string>().rfind("Qwen2VLImageProcessor", 0) != 0)
      throw_input_error(kComponent,
                        "{}: field 'image_processor_type': expected Qwen2VLImageProcessor (the "
                        "Qwen2-VL, Qwen2.5-VL and Qwen3-VL processor), found {}",
                        source, found(*it));
  }
  c.patch_size = read_int(j, "patch_size", source, c.patch_size, 1);
  c.temporal_patch_size = read_int(j, "temporal_patch_size", source, c.temporal_patch_size, 1);
  c.merge_size = read_int(j, "merge_size", source, c.merge_size, 1);
  if (auto it = j.find("size"); it != j.end() && !it->is_null()) {
    if (!it->is_object() || !it->contains("shortest_edge") || !it->contains("longest_edge"))
      throw_input_error(kComponent,
                        "{}: field 'size': expected {{\"shortest_edge\": min pixels, "
                        "\"longest_edge\": max pixels}}, found {}",
                        source, found(*it));
    c.min_pixels = read_int(*it, "shortest_edge", source, c.min_pixels, 0, "size.");
    c.max_pixels = read_int(*it, "longest_edge", source, c.max_pixels, 1, "size.");
  }
  c.min_pixels = read_int(j, "min_pixels", source, c.min_pixels, 0);
  c.max_pixels = read_int(j, "max_pixels", source, c.max_pixels, 1);
  c.do_resize = read_bool(j, "do_resize", source, c.do_resize);
  c.do_rescale = read_bool(j, "do_rescale", source, c.do_rescale);
  c.do_normalize = read_bool(j, "do_normalize", source, c.do_normalize);
  if (!read_bool(j, "do_convert_rgb", source, true))
    throw_input_error(kComponent,
                      "{}: field 'do_convert_rgb': false is not supported (fitlm feeds RGB, as "
                      "the Qwen-VL models expect)",
                      source);
  if (auto it = j.find("rescale_factor"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || !(it->get<double>() > 0))
      throw_input_error(kComponent, "{}: field 'rescale_factor': expected a number > 0, found {}",
                        source, found(*it));
    c.rescale_factor = it->get<double>();
  }
  if (auto it = j.find("resample"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() != 3)
      throw_input_error(kComponent,
                        "{}: field 'resample': only 3 (bicubic, the Qwen-VL default) is "
                        "supported, found {}",
                        source, found(*it));
  }
  c.image_mean = read_channels(j, "image_mean", source, c.image_mean, false);
  c.image_std = read_channels(j, "image_std", source, c.image_std, true);
  return c;
}

VisionPreprocessConfig load_vision_preprocess_config(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(path)) file = path / "preprocessor_config.json";
  if (!std::filesystem::exists(file))
    throw_input_error(kComponent,
                      "{}: no preprocessor_config.json (a Qwen-VL model directory has one)",
                      clip_path(file.string()));
  const Json j = json_input::parse_file(file, kComponent);
  return json_input::read_fields(kComponent, file.string(), [&] {
    return parse_vision_preprocess_config(j, clip_path(file.string()));
  });
}

}  // namespace fitlm::vision
