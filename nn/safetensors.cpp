// nn/safetensors.cpp — see safetensors.h for the format and the contract.
//
// Reading goes in three passes so that nothing is allocated on the word of
// the header alone: (1) parse the header and check each tensor's dtype, shape
// and offsets against the size of the data buffer actually present, (2) check
// that the tensors tile the buffer exactly, (3) only then convert the bytes.
#include "nn/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <stdexcept>

#include "data/io.h"
#include "data/json.h"

namespace ta {

namespace {

// Hugging Face refuses headers above 100 MB; a real one is a few hundred KB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// JSON numbers are doubles: whole numbers are exact only up to 2^53.
constexpr double kMaxExactInteger = 9007199254740992.0;

enum class Dtype { F16, BF16, F32, F64 };

struct DtypeSpec {
  const char* name;
  Dtype dtype;
  uint64_t bytes;  // per element
};

constexpr DtypeSpec kReadableDtypes[] = {
    {"F16", Dtype::F16, 2}, {"BF16", Dtype::BF16, 2}, {"F32", Dtype::F32, 4}, {"F64", Dtype::F64, 8}};

// One tensor as the header describes it, checked but not yet converted.
struct TensorEntry {
  std::string name;
  const DtypeSpec* dtype;
  std::vector<int64_t> shape;
  uint64_t numel;
  uint64_t begin, end;  // [begin, end) byte offsets into the data buffer
};

[[noreturn]] void bad_file(const std::string& source, const std::string& problem) {
  throw InputError(source + ": " + problem);
}

// Little-endian loads and stores, spelled out so the code is right on any
// host; compilers turn each into a single load or store on x86-64.
template <typename Bits>
Bits load_le(const unsigned char* p) {
  Bits x = 0;
  for (size_t i = sizeof(Bits); i-- > 0;) x = static_cast<Bits>((x << 8) | p[i]);
  return x;
}

template <typename Bits>
void store_le(unsigned char* p, Bits x) {
  for (size_t i = 0; i < sizeof(Bits); i++) p[i] = static_cast<unsigned char>(x >> (8 * i));
}

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t bits_from_float(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Rounds to the nearest float32 as IEEE 754 does. A finite double beyond
// float range is undefined behaviour for a plain cast, so the overflow is
// decided here: at or above FLT_MAX plus half an ulp it rounds to infinity.
float double_to_float(double x) {
  constexpr double kRoundsToInfinity = 0x1.ffffffp+127;
  constexpr float kMax = std::numeric_limits<float>::max();
  constexpr float kInfinity = std::numeric_limits<float>::infinity();
  if (std::fabs(x) >= kRoundsToInfinity) return x > 0 ? kInfinity : -kInfinity;
  if (std::fabs(x) > kMax) return x > 0 ? kMax : -kMax;
  return static_cast<float>(x);
}

// product *= factor; false (and product unchanged) if that overflows 64 bits.
bool multiply_checked(uint64_t& product, uint64_t factor) {
  if (factor != 0 && product > std::numeric_limits<uint64_t>::max() / factor) return false;
  product *= factor;
  return true;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); i++) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// A JSON number that must be a whole number in [0, 2^53].
uint64_t whole_number(const json::Value& v, const std::string& what) {
  double x = v.as_number(what);
  if (!(x >= 0 && x <= kMaxExactInteger && x == std::floor(x)))
    throw InputError(what + ": expected a whole number from 0 to 2^53, got " + v.dump());
  return static_cast<uint64_t>(x);
}

const DtypeSpec* find_dtype(const std::string& name, const std::string& what) {
  for (const DtypeSpec& spec : kReadableDtypes)
    if (name == spec.name) return &spec;
  throw InputError(what + ": unsupported dtype \"" + name + "\" (readable: F32, F16, BF16, F64)");
}

}  // namespace

float half_to_float(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1F;  // biased by 15
  uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0x1F)  // infinity or NaN: keep the payload
    return float_from_bits(sign | 0x7F800000 | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa × 2^-24, exact in float32
    float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return float_from_bits(sign | bits_from_float(magnitude));
  }
  // Normal: rebias the exponent from 15 to 127 and widen the mantissa.
  return float_from_bits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

// bfloat16 is the top half of a float32, so widening is a shift.
float bfloat16_to_float(uint16_t bits) { return float_from_bits(static_cast<uint32_t>(bits) << 16); }

namespace {

// Checks one header entry against the data buffer of `buffer_size` bytes.
TensorEntry parse_entry(const std::string& name, const json::Value& info, uint64_t buffer_size,
                        const std::string& source) {
  std::string where = source + ": tensor \"" + name + "\"";
  TensorEntry entry{name, nullptr, {}, 1, 0, 0};
  entry.dtype = find_dtype(info.at("dtype", where).as_string(where + ": dtype"), where);

  for (const json::Value& dim : info.at("shape", where).items(where + ": shape")) {
    uint64_t size = whole_number(dim, where + ": shape");
    if (!multiply_checked(entry.numel, size))
      bad_file(source, "tensor \"" + name + "\": shape " + info.at("shape").dump() + " has more than 2^64 elements");
    entry.shape.push_back(static_cast<int64_t>(size));
  }
  uint64_t needed_bytes = entry.numel;
  if (!multiply_checked(needed_bytes, entry.dtype->bytes))
    bad_file(source, "tensor \"" + name + "\": shape " + shape_text(entry.shape) + " has more than 2^64 bytes");

  const auto& offsets = info.at("data_offsets", where).items(where + ": data_offsets");
  if (offsets.size() != 2)
    bad_file(source, "tensor \"" + name + "\": data_offsets must be [begin, end], got " + std::to_string(offsets.size()) + " numbers");
  entry.begin = whole_number(offsets[0], where + ": data_offsets");
  entry.end = whole_number(offsets[1], where + ": data_offsets");
  std::string range = "[" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
  if (entry.begin > entry.end)
    bad_file(source, "tensor \"" + name + "\": data_offsets " + range + " are in the wrong order");
  if (entry.end > buffer_size)
    bad_file(source, "tensor \"" + name + "\": data_offsets " + range + " run past the end of the data (" +
                         std::to_string(buffer_size) + " bytes; the file is truncated or the header is wrong)");
  if (entry.end - entry.begin != needed_bytes)
    bad_file(source, "tensor \"" + name + "\": data_offsets " + range + " hold " + std::to_string(entry.end - entry.begin) +
                         " bytes, but shape " + shape_text(entry.shape) + " of " + entry.dtype->name + " needs " +
                         std::to_string(needed_bytes));
  return entry;
}

// "__metadata__" is a flat map of strings (or null) in every writer we know.
SafetensorsMetadata read_metadata(const json::Value& metadata, const std::string& source) {
  SafetensorsMetadata pairs;
  if (metadata.is_null()) return pairs;
  std::string where = source + ": __metadata__";
  for (const auto& [key, value] : metadata.members(where)) pairs.emplace_back(key, value.as_string(where + ": " + key));
  return pairs;
}

// The spec requires the tensors to tile the data buffer: sorted by offset,
// each begins where the previous one ended and the last ends at the end.
void check_coverage(std::vector<const TensorEntry*> entries, uint64_t buffer_size, const std::string& source) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;  // bytes [0, covered) belong to the tensors seen so far
  const TensorEntry* previous = nullptr;
  for (const TensorEntry* entry : entries) {
    if (entry->begin < covered)
      bad_file(source, "tensors \"" + previous->name + "\" and \"" + entry->name + "\" overlap in the data");
    if (entry->begin > covered)
      bad_file(source, "data bytes [" + std::to_string(covered) + ", " + std::to_string(entry->begin) +
                           ") belong to no tensor");
    covered = entry->end;
    previous = entry;
  }
  if (covered != buffer_size)
    bad_file(source, "the last " + std::to_string(buffer_size - covered) + " data bytes belong to no tensor");
}

double double_from_bits(uint64_t bits) {
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// Converts n values of the entry's dtype at `p` to float32 in `out`.
void convert_into(const TensorEntry& entry, const unsigned char* p, uint64_t n, float* out) {
  switch (entry.dtype->dtype) {  // one loop per dtype keeps each loop tight
    case Dtype::F16:
      for (uint64_t i = 0; i < n; i++) out[i] = half_to_float(load_le<uint16_t>(p + 2 * i));
      break;
    case Dtype::BF16:
      for (uint64_t i = 0; i < n; i++) out[i] = bfloat16_to_float(load_le<uint16_t>(p + 2 * i));
      break;
    case Dtype::F32:
      for (uint64_t i = 0; i < n; i++) out[i] = float_from_bits(load_le<uint32_t>(p + 4 * i));
      break;
    case Dtype::F64:
      for (uint64_t i = 0; i < n; i++) out[i] = double_to_float(double_from_bits(load_le<uint64_t>(p + 8 * i)));
      break;
  }
}

NamedArray convert(const TensorEntry& entry, const unsigned char* buffer) {
  NamedArray array{entry.name, entry.shape, std::vector<float>(entry.numel)};
  convert_into(entry, buffer + entry.begin, entry.numel, array.values.data());
  return array;
}

}  // namespace

namespace {

// The checked header of a file of `file_size` bytes whose first
// `prefix.size()` bytes are `prefix` (at least the length and the header):
// every entry validated against the data buffer's size, which is all a
// header can be checked against without reading the data.
std::vector<TensorEntry> parse_header(const std::string& prefix, uint64_t file_size, const std::string& source,
                                      SafetensorsMetadata* metadata, uint64_t* data_start) {
  if (metadata) metadata->clear();
  if (file_size < 8)
    bad_file(source, "too short for a safetensors file (" + std::to_string(file_size) +
                         " bytes; the header length alone takes 8)");
  const auto* file = reinterpret_cast<const unsigned char*>(prefix.data());
  uint64_t header_bytes = load_le<uint64_t>(file);
  if (header_bytes > kMaxHeaderBytes)
    bad_file(source, "header length " + std::to_string(header_bytes) + " is over the 100 MB limit; not a safetensors file?");
  if (header_bytes > file_size - 8)
    bad_file(source, "header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
                         std::to_string(file_size) + " bytes)");
  json::Value header = json::parse(prefix.substr(8, header_bytes), source + ": header");
  if (!header.is_object()) bad_file(source, "header is not a JSON object");

  // Duplicate names cannot reach here: json::parse rejects duplicate keys.
  uint64_t buffer_size = file_size - 8 - header_bytes;
  std::vector<TensorEntry> entries;
  for (const auto& [name, info] : header.members()) {
    if (name == "__metadata__") {
      SafetensorsMetadata pairs = read_metadata(info, source);
      if (metadata) *metadata = std::move(pairs);
    } else entries.push_back(parse_entry(name, info, buffer_size, source));
  }
  std::vector<const TensorEntry*> by_offset;
  for (const TensorEntry& entry : entries) by_offset.push_back(&entry);
  check_coverage(by_offset, buffer_size, source);
  *data_start = 8 + header_bytes;
  return entries;
}

}  // namespace

std::vector<NamedArray> read_safetensors_bytes(const std::string& bytes, const std::string& source,
                                               SafetensorsMetadata* metadata) {
  uint64_t data_start = 0;
  const std::vector<TensorEntry> entries = parse_header(bytes, bytes.size(), source, metadata, &data_start);
  const unsigned char* buffer = reinterpret_cast<const unsigned char*>(bytes.data()) + data_start;
  std::vector<NamedArray> arrays;
  arrays.reserve(entries.size());
  for (const TensorEntry& entry : entries) arrays.push_back(convert(entry, buffer));
  return arrays;
}

std::vector<NamedArray> read_safetensors(const std::string& path, SafetensorsMetadata* metadata) {
  return read_safetensors_bytes(read_file(path), path, metadata);
}

namespace {

// Opens `path` and reads and checks its header alone; *data_start is where the data begins.
std::vector<TensorEntry> read_header(std::ifstream& in, const std::string& path, uint64_t* data_start) {
  in.open(path, std::ios::binary | std::ios::ate);
  if (!in) throw InputError(path + ": cannot open");
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  std::string prefix(std::min<uint64_t>(file_size, 8), '\0');
  in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  if (prefix.size() == 8) {  // the header itself, as far as the file holds it (parse_header reports a short one)
    const uint64_t header_bytes = load_le<uint64_t>(reinterpret_cast<const unsigned char*>(prefix.data()));
    if (header_bytes <= kMaxHeaderBytes && header_bytes <= file_size - 8) {
      prefix.resize(8 + header_bytes);
      in.read(prefix.data() + 8, static_cast<std::streamsize>(header_bytes));
      if (!in) throw InputError(path + ": cannot read its header");
    }
  }
  return parse_header(prefix, file_size, path, nullptr, data_start);
}

}  // namespace

void read_safetensors_into(const std::string& path,
                           const std::function<void(const std::vector<SafetensorsEntry>& entries)>& check_header,
                           const std::function<SafetensorsDestination(const SafetensorsEntry& entry)>& destination) {
  std::ifstream in;
  uint64_t data_start = 0;
  std::vector<TensorEntry> entries = read_header(in, path, &data_start);
  std::vector<SafetensorsEntry> described;
  for (const TensorEntry& entry : entries) described.push_back({entry.name, entry.shape, entry.dtype->name});
  check_header(described);  // before a byte of data is read
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  constexpr uint64_t kRun = 1 << 20;  // values read and converted at a time
  std::vector<unsigned char> bytes;
  std::vector<float> run;  // a run's values, when they go to pieces()
  for (const TensorEntry& entry : entries) {
    const SafetensorsDestination to = destination({entry.name, entry.shape, entry.dtype->name});
    if (!to.values && !to.pieces) continue;
    const uint64_t value_bytes = entry.numel ? (entry.end - entry.begin) / entry.numel : 0;
    in.seekg(static_cast<std::streamoff>(data_start + entry.begin));
    for (uint64_t first = 0; first < entry.numel; first += kRun) {
      const uint64_t n = std::min(kRun, entry.numel - first);
      bytes.resize(n * value_bytes);
      in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      if (!in) throw InputError(path + ": cannot read tensor \"" + entry.name + "\" (the file changed while it was read?)");
      if (to.values) {
        convert_into(entry, bytes.data(), n, to.values + first);
      } else {
        run.resize(n);
        convert_into(entry, bytes.data(), n, run.data());
        to.pieces(static_cast<int64_t>(first), run.data(), static_cast<int64_t>(n));
      }
    }
  }
}

namespace {

// Sorted by name, as Hugging Face orders tensors of one dtype; checked.
std::vector<const NamedArray*> sorted_for_writing(const std::vector<NamedArray>& arrays) {
  std::vector<const NamedArray*> sorted;
  for (const NamedArray& array : arrays) {
    if (array.name == "__metadata__")
      throw std::invalid_argument("safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    uint64_t numel = 1;
    for (int64_t size : array.shape)
      if (size < 0 || !multiply_checked(numel, static_cast<uint64_t>(size)))
        throw std::invalid_argument("safetensors: tensor \"" + array.name + "\" has an invalid shape " +
                                    shape_text(array.shape));
    if (numel != array.values.size())
      throw std::invalid_argument("safetensors: tensor \"" + array.name + "\" has shape " + shape_text(array.shape) +
                                  " but " + std::to_string(array.values.size()) + " values");
    sorted.push_back(&array);
  }
  std::sort(sorted.begin(), sorted.end(), [](const NamedArray* a, const NamedArray* b) { return a->name < b->name; });
  for (size_t i = 1; i < sorted.size(); i++)
    if (sorted[i]->name == sorted[i - 1]->name)
      throw std::invalid_argument("safetensors: two tensors are named \"" + sorted[i]->name + "\"");
  return sorted;
}

// The header as serde_json writes it for Hugging Face: no spaces, metadata
// first, then {"dtype":"F32","shape":[..],"data_offsets":[begin,end]} per tensor.
std::string header_json(const std::vector<const NamedArray*>& sorted, const SafetensorsMetadata& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); i++) {
      if (i) header += ',';
      json::write_string(header, metadata[i].first);
      header += ':';
      json::write_string(header, metadata[i].second);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const NamedArray* array : sorted) {
    if (header.size() > 1) header += ',';
    json::write_string(header, array->name);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < array->shape.size(); i++) header += (i ? "," : "") + std::to_string(array->shape[i]);
    uint64_t end = offset + 4 * array->values.size();
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  return header + "}";
}

}  // namespace

std::string safetensors_bytes(const std::vector<NamedArray>& arrays, const SafetensorsMetadata& metadata) {
  std::vector<const NamedArray*> sorted = sorted_for_writing(arrays);
  std::string header = header_json(sorted, metadata);
  // Parsing our own header back catches what would make the file unreadable
  // (names or metadata that are not valid UTF-8, duplicate metadata keys).
  try {
    json::parse(header, "header");
  } catch (const InputError& e) {
    throw std::invalid_argument(std::string("safetensors: cannot write: ") + e.what());
  }
  // Pad with spaces so the data buffer starts 8-byte aligned in the file.
  header.append((8 - header.size() % 8) % 8, ' ');

  size_t value_count = 0;
  for (const NamedArray* array : sorted) value_count += array->values.size();
  std::string out(8 + header.size() + 4 * value_count, '\0');
  auto* p = reinterpret_cast<unsigned char*>(&out[0]);
  store_le<uint64_t>(p, header.size());
  std::memcpy(p + 8, header.data(), header.size());
  p += 8 + header.size();
  for (const NamedArray* array : sorted)
    for (float value : array->values) {
      store_le<uint32_t>(p, bits_from_float(value));
      p += 4;
    }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<NamedArray>& arrays,
                       const SafetensorsMetadata& metadata) {
  write_file_atomic(path, safetensors_bytes(arrays, metadata));
}

}  // namespace ta
