// Image container formats, told apart by their first bytes (a file's extension can lie: a
// ".jpg" that is a PNG is common in scraped datasets, and PIL opens it by content too).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace fitlm::vision {

enum class ImageFormat { kJpeg, kPng, kWebp, kUnknown };

// The format the signature at the start of `bytes` names; kUnknown for anything else.
ImageFormat detect_image_format(std::span<const uint8_t> bytes);
std::string_view image_format_name(ImageFormat f);  // "JPEG", "PNG", "WebP", "unknown"
// For an unsupported file, what its signature says it is ("GIF", "BMP", "TIFF", ...), or an
// empty view: error messages then say more than "not an image".
std::string_view describe_unsupported_format(std::span<const uint8_t> bytes);

}  // namespace fitlm::vision
