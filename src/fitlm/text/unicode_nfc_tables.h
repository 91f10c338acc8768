// Unicode data for NFC/NFD, generated from Python's unicodedata by unicode_nfc_tables_gen.py.
// All tables are sorted by code point so lookups are binary searches.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fitlm::unicode::nfc_tables {

struct CccRange {
  char32_t first, last;
  uint8_t ccc;  // canonical combining class, non-zero
};
struct Decomposition {
  char32_t cp;
  uint16_t offset, length;  // full canonical decomposition in kDecompData
};
struct Composition {
  char32_t first, second, composite;  // primary composites only (exclusions removed)
};
struct CodeRange {
  char32_t first, last;
};

extern const char* const kUnicodeVersion;
extern const CccRange kCcc[];
extern const size_t kCccCount;
extern const char32_t kDecompData[];
extern const Decomposition kDecomp[];
extern const size_t kDecompCount;
extern const Composition kCompose[];
extern const size_t kComposeCount;
// Code points that may change under NFC or block the quick check (non-zero ccc, NFC_QC No or
// Maybe). A string without any of them is already in NFC.
extern const CodeRange kUnsafe[];
extern const size_t kUnsafeCount;

}  // namespace fitlm::unicode::nfc_tables
