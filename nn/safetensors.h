// nn/safetensors.h — reading and writing the Hugging Face safetensors format.
//
// The file layout (https://huggingface.co/docs/safetensors, "Format"):
//
//   [8 bytes]  N, the header length, an unsigned 64-bit little-endian integer
//   [N bytes]  a UTF-8 JSON object, one entry per tensor
//                {"wte.weight": {"dtype": "F32", "shape": [50257, 768],
//                                "data_offsets": [0, 154389504]}, ...}
//              plus an optional "__metadata__": {string: string} entry
//   [the rest] the data buffer; data_offsets are [begin, end) byte offsets
//              into it, tensors are row-major and little-endian, and together
//              they must cover the buffer exactly: no overlaps, no holes.
//
// This layer knows nothing of Tensor or Module: it moves named arrays of
// float32 values. The checkpoint code maps them onto parameters.
//
// Reading accepts F32, F16, BF16 and F64 and converts to float32 (exactly for
// F16 and BF16, including subnormals, infinities and NaN; F64 rounds to
// nearest). Every inconsistency in a file — a header length past the end of
// the file, a header that is not a JSON object, an unknown dtype, a negative
// or overflowing shape, offsets out of order or past the end, a byte size
// that disagrees with shape × dtype, overlapping tensors, holes, duplicate
// names — throws one ta::InputError "FILE: problem". Sizes are checked against
// the file before anything is allocated, so a lying header cannot make us
// allocate more than a small multiple of the file's own size.
//
// Writing produces the bytes Hugging Face's safetensors library produces for
// the same float32 tensors: tensors sorted by name (its order for tensors of
// one dtype), "__metadata__" first, compact JSON, the header padded with
// spaces to a multiple of 8 so the data buffer is 8-byte aligned.
//
// Not here: zero-copy memory mapping, writing dtypes other than F32.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ta {

// One tensor of a safetensors file. values.size() == product of shape
// (1 for a scalar, whose shape is []).
struct NamedArray {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// String key/value pairs stored under "__metadata__", in the order given.
using SafetensorsMetadata = std::vector<std::pair<std::string, std::string>>;

// Reads every tensor of the file at `path`, in the order of its header, and,
// when `metadata` is given, the "__metadata__" pairs into it (empty if none).
std::vector<NamedArray> read_safetensors(const std::string& path, SafetensorsMetadata* metadata = nullptr);

// The same, from the bytes of a whole file; `source` names it in errors.
std::vector<NamedArray> read_safetensors_bytes(const std::string& bytes, const std::string& source,
                                               SafetensorsMetadata* metadata = nullptr);

// A tensor as the header describes it.
struct SafetensorsEntry {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;  // "F32", "F16", "BF16", "F64"
};

// Where read_safetensors_into puts an entry's values: into `values`, a
// buffer of the entry's element count, or, a run at a time as they are read,
// to pieces(offset, values, count) (to convert them on without holding the
// whole tensor in float32: bfloat16 storage); neither set: skipped.
struct SafetensorsDestination {
  float* values = nullptr;
  std::function<void(int64_t offset, const float* values, int64_t count)> pieces;
};

// Reads the file's header and checks it as read_safetensors does (offsets
// against the file's size, coverage), then hands every entry to
// check_header before any data is read: a truncated or mismatched 500 MB
// checkpoint is refused for the price of its header. Then reads the tensors
// one at a time, each converted to float32 into destination(entry), in runs
// of 1 M values. Memory beyond the destinations: one run (4-8 MB). (A
// checkpoint loaded into a model this way holds the model and a few MB, not
// the whole file or its largest tensor once more.)
void read_safetensors_into(const std::string& path,
                           const std::function<void(const std::vector<SafetensorsEntry>& entries)>& check_header,
                           const std::function<SafetensorsDestination(const SafetensorsEntry& entry)>& destination);

// The file content for `arrays`: F32 tensors sorted by name, `metadata`
// under "__metadata__" (omitted entirely when empty, as Hugging Face does for
// metadata=None). Throws std::invalid_argument for arrays that cannot be
// written: duplicate or reserved names, values.size() != product of shape,
// a negative dimension.
std::string safetensors_bytes(const std::vector<NamedArray>& arrays,
                              const SafetensorsMetadata& metadata = {{"format", "pt"}});

// Writes safetensors_bytes(arrays, metadata) to `path` atomically. The default
// metadata {"format": "pt"} is what transformers and PEFT write and expect.
void write_safetensors(const std::string& path, const std::vector<NamedArray>& arrays,
                       const SafetensorsMetadata& metadata = {{"format", "pt"}});

// Exact conversions of one 16-bit float (IEEE half, and bfloat16) to float32.
float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);

}  // namespace ta
