// tests/test_safetensors.cpp — the safetensors reader and writer of nn/safetensors.h.
//
// The byte layouts below are the ones Hugging Face's own safetensors tests pin
// for its serializer (safetensors/src/tensor.rs: test_serialization,
// test_serialization_forced_alignement, test_empty), so "byte-identical to
// what PyTorch's safetensors writes" is checked without the Python package.
// Where /usr/bin/python3 has torch, the F16/BF16 conversions are compared with
// torch's for all 65,536 bit patterns; where it has safetensors, a file we
// write is loaded and re-saved by it and must come back byte for byte.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ios>
#include <limits>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include "data/io.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"

using ta::NamedArray;
using ta::testing::ScratchDir;

namespace {

std::string le64(uint64_t x) {
  std::string out;
  for (int i = 0; i < 8; i++) out += static_cast<char>((x >> (8 * i)) & 0xFF);
  return out;
}

std::string f32_bytes(const std::vector<float>& values) {
  std::string out(4 * values.size(), '\0');
  if (!values.empty()) std::memcpy(&out[0], values.data(), out.size());  // x86-64 is little-endian
  return out;
}

std::string u16_bytes(const std::vector<uint16_t>& values) {
  std::string out;
  for (uint16_t v : values) out += {static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)};
  return out;
}

// A safetensors file: the 8-byte length, `header` as given (unpadded), `data`.
std::string file_bytes(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// Writes `bytes` as a file and returns the InputError message from reading it
// ("" if it read); other exceptions escape and fail the test.
std::string read_error(const ScratchDir& dir, const std::string& bytes) {
  std::string path = dir.file("bad.safetensors");
  ta::write_file_atomic(path, bytes);
  try {
    ta::read_safetensors(path);
  } catch (const ta::InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("safetensors: round trip keeps names, shapes (scalars, zero sizes) and float bits") {
  ScratchDir dir("safetensors");
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<NamedArray> arrays = {
      {"wte.weight", {2, 3}, {1.5f, -2.0f, 0.0f, -0.0f, inf, std::nanf("")}},
      {"scalar", {}, {0x1p-149f}},  // the smallest subnormal
      {"empty", {0, 4}, {}},
      {"h.0.empty_middle", {3, 0, 2}, {}},
      {"a.bias", {5}, {1, 2, 3, 4, 5}},
  };
  std::string path = dir.file("model.safetensors");
  ta::write_safetensors(path, arrays);
  std::vector<NamedArray> back = ta::read_safetensors(path);

  // Written sorted by name; read in header order, which is that order.
  std::vector<std::string> names;
  for (const NamedArray& a : back) names.push_back(a.name);
  CHECK(names == std::vector<std::string>{"a.bias", "empty", "h.0.empty_middle", "scalar", "wte.weight"});
  for (const NamedArray& original : arrays) {
    const NamedArray* read = nullptr;
    for (const NamedArray& a : back)
      if (a.name == original.name) read = &a;
    REQUIRE(read != nullptr);
    CHECK(read->shape == original.shape);
    REQUIRE(read->values.size() == original.values.size());
    for (size_t i = 0; i < original.values.size(); i++) CHECK(bits(read->values[i]) == bits(original.values[i]));
  }
  // 8-byte length, a header padded to a multiple of 8, then 4 bytes a value.
  std::string bytes = ta::read_file(path);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; i--) header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK(header_size % 8 == 0);
  CHECK(bytes.size() == 8 + header_size + 4 * (6 + 1 + 5));
  CHECK(bytes.compare(8, 31, R"({"__metadata__":{"format":"pt"})") == 0);
  CHECK(!ta::file_exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("safetensors: written bytes match Hugging Face's serializer") {
  const std::string zero_to_five = f32_bytes({0, 1, 2, 3, 4, 5});
  // 64 bytes of JSON: already a multiple of 8, so no padding.
  CHECK(ta::safetensors_bytes({{"attn.0", {1, 2, 3}, {0, 1, 2, 3, 4, 5}}}, {}) ==
        le64(64) + R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})" + zero_to_five);
  // 65 bytes of JSON, padded with 7 spaces so the data starts 8-aligned.
  CHECK(ta::safetensors_bytes({{"attn0", {1, 1, 2, 3}, {0, 1, 2, 3, 4, 5}}}, {}) ==
        le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + "       " + zero_to_five);
  CHECK(ta::safetensors_bytes({}, {}) == le64(8) + "{}      ");
  CHECK(ta::safetensors_bytes({}, {{"framework", "pt"}}) == le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
  // Given out of order: sorted by name, offsets follow that order; names escaped as JSON.
  std::string two = ta::safetensors_bytes({{"b", {1}, {2}}, {"a\"q", {}, {1}}});
  std::string header = R"({"__metadata__":{"format":"pt"},"a\"q":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  CHECK(two == le64(header.size()) + header + f32_bytes({1, 2}));
}

TEST_CASE("safetensors: F16 and BF16 widen exactly, F64 rounds to nearest") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(ta::half_to_float(0x3C00) == 1.0f);
  CHECK(ta::half_to_float(0xC000) == -2.0f);
  CHECK(ta::half_to_float(0x3555) == 0x1.554p-2f);  // the half nearest 1/3
  CHECK(ta::half_to_float(0x7BFF) == 65504.0f);     // largest finite half
  CHECK(ta::half_to_float(0x0400) == 0x1p-14f);     // smallest normal
  CHECK(ta::half_to_float(0x03FF) == 1023 * 0x1p-24f);  // largest subnormal
  CHECK(ta::half_to_float(0x0001) == 0x1p-24f);     // smallest subnormal
  CHECK(ta::half_to_float(0x8001) == -0x1p-24f);
  CHECK(bits(ta::half_to_float(0x8000)) == 0x80000000u);  // -0
  CHECK(ta::half_to_float(0x7C00) == inf);
  CHECK(ta::half_to_float(0xFC00) == -inf);
  CHECK(std::isnan(ta::half_to_float(0x7E00)));
  CHECK(std::isnan(ta::half_to_float(0x7C01)));  // a signalling NaN stays a NaN, not inf

  CHECK(ta::bfloat16_to_float(0x3F80) == 1.0f);
  CHECK(ta::bfloat16_to_float(0x4049) == 3.140625f);
  CHECK(ta::bfloat16_to_float(0x0001) == 0x1p-133f);  // a float32 subnormal
  CHECK(ta::bfloat16_to_float(0x7F7F) == 0x1.fep+127f);
  CHECK(ta::bfloat16_to_float(0xFF80) == -inf);
  CHECK(std::isnan(ta::bfloat16_to_float(0x7FC1)));

  ScratchDir dir("safetensors");
  std::string path = dir.file("mixed.safetensors");
  std::string header = R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]},)"
                       R"("d":{"dtype":"F64","shape":[4],"data_offsets":[6,38]}})";
  std::vector<double> doubles = {0.1, -1e300, 3.4028235677973366e38, 1e-50};  // the third rounds to inf
  std::string data = u16_bytes({0x3C00, 0x0001}) + u16_bytes({0xC049});
  data.append(reinterpret_cast<const char*>(doubles.data()), 8 * doubles.size());
  ta::write_file_atomic(path, file_bytes(header, data));
  std::vector<NamedArray> arrays = ta::read_safetensors(path);
  REQUIRE(arrays.size() == 3);
  CHECK(arrays[0].name == "h");  // header order
  CHECK(arrays[0].values == std::vector<float>{1.0f, 0x1p-24f});
  CHECK(arrays[1].shape == std::vector<int64_t>{1, 1});
  CHECK(arrays[1].values == std::vector<float>{-3.140625f});
  CHECK(arrays[2].values == std::vector<float>{0.1f, -inf, inf, 0.0f});
}

TEST_CASE("safetensors: F16 and BF16 agree with torch on all 65,536 bit patterns") {
  if (!ta::testing::torch_available()) {
    MESSAGE("skipped: /usr/bin/python3 has no torch (apt-get install python3-torch)");
    return;
  }
  ScratchDir dir("safetensors");
  std::string script =
      "import sys, torch\n"
      "bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)\n"
      "for dtype, name in ((torch.float16, 'f16'), (torch.bfloat16, 'bf16')):\n"
      "    bits.view(dtype).float().numpy().tofile(sys.argv[1] + '/' + name)\n";
  ta::write_file_atomic(dir.file("widen.py"), script);
  REQUIRE(std::system(("/usr/bin/python3 " + dir.file("widen.py") + " " + dir.path).c_str()) == 0);
  for (const char* name : {"f16", "bf16"}) {
    std::string torch_values = ta::read_file(dir.file(name));
    REQUIRE(torch_values.size() == 4 * 65536);
    int mismatches = 0;
    for (uint32_t b = 0; b < 65536; b++) {
      float ours = name[0] == 'f' ? ta::half_to_float(static_cast<uint16_t>(b)) : ta::bfloat16_to_float(static_cast<uint16_t>(b));
      float theirs;
      std::memcpy(&theirs, &torch_values[4 * b], 4);
      bool same = std::isnan(theirs) ? std::isnan(ours) : bits(ours) == bits(theirs);
      if (!same && mismatches++ < 5) MESSAGE(name << " bits 0x" << std::hex << b << ": ours " << ours << ", torch " << theirs);
    }
    CHECK_MESSAGE(mismatches == 0, name);
  }
}

TEST_CASE("safetensors: a file we write loads and re-saves byte-identically in Hugging Face safetensors") {
  if (std::system("/usr/bin/python3 -c 'import safetensors.torch' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 has no safetensors package (the layout is checked against HF's pinned bytes above)");
    return;
  }
  ScratchDir dir("safetensors");
  ta::write_safetensors(dir.file("ours.safetensors"),
                        {{"transformer.wte.weight", {3, 2}, {1, 2, 3, 4, 5, 6}}, {"lm.bias", {}, {0.5f}}, {"z", {0}, {}}});
  std::string script =
      "import sys\n"
      "from safetensors.torch import load_file, save_file\n"
      "tensors = load_file(sys.argv[1] + '/ours.safetensors')\n"
      "assert tensors['transformer.wte.weight'].tolist() == [[1, 2], [3, 4], [5, 6]]\n"
      "assert tensors['lm.bias'].shape == () and tensors['lm.bias'].item() == 0.5\n"
      "save_file(tensors, sys.argv[1] + '/theirs.safetensors', metadata={'format': 'pt'})\n";
  ta::write_file_atomic(dir.file("resave.py"), script);
  REQUIRE(std::system(("/usr/bin/python3 " + dir.file("resave.py") + " " + dir.path).c_str()) == 0);
  CHECK(ta::read_file(dir.file("theirs.safetensors")) == ta::read_file(dir.file("ours.safetensors")));
}

TEST_CASE("safetensors: every malformed file throws one InputError naming the file and the problem") {
  ScratchDir dir("safetensors");
  const std::string path = dir.file("bad.safetensors");
  auto tensor = [](const std::string& name, const std::string& dtype, const std::string& shape,
                   const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
  };
  const std::string eight = f32_bytes({1, 2});
  const std::string good = tensor("x", "F32", "[2]", "[0,8]");
  REQUIRE(read_error(dir, file_bytes("{" + good + "}", eight)).empty());  // the baseline reads

  struct Case {
    const char* what;
    std::string bytes;
    const char* expected;  // a phrase of the message
  };
  const Case cases[] = {
      {"empty file", "", "too short"},
      {"7 bytes", std::string(7, '\0'), "too short"},
      {"header length past the end", le64(1000) + "{}", "runs past the end of the file"},
      {"absurd header length", le64(uint64_t(1) << 62) + "{}", "100 MB"},
      {"header not JSON", file_bytes("{\"x\":", eight), "invalid JSON"},
      {"header not an object", file_bytes("[1,2]"), "not a JSON object"},
      {"header not UTF-8", file_bytes("{\"\xff\":1}"), "invalid UTF-8"},
      {"tensor entry not an object", file_bytes("{\"x\":3}", eight), "expected an object"},
      {"dtype missing", file_bytes(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", eight), "missing key \"dtype\""},
      {"unknown dtype", file_bytes("{" + tensor("x", "F33", "[2]", "[0,8]") + "}", eight), "unsupported dtype \"F33\""},
      {"integer dtype", file_bytes("{" + tensor("x", "I64", "[1]", "[0,8]") + "}", eight), "unsupported dtype \"I64\""},
      {"negative dimension", file_bytes("{" + tensor("x", "F32", "[-2]", "[0,8]") + "}", eight), "got -2"},
      {"fractional dimension", file_bytes("{" + tensor("x", "F32", "[1.5]", "[0,8]") + "}", eight), "whole number"},
      {"dimension not a number", file_bytes("{" + tensor("x", "F32", "[\"2\"]", "[0,8]") + "}", eight), "expected a number"},
      {"infinite dimension", file_bytes("{" + tensor("x", "F32", "[1e999]", "[0,8]") + "}", eight), "out of the range"},
      {"element count overflows", file_bytes("{" + tensor("x", "F32", "[4294967296,4294967296]", "[0,8]") + "}", eight), "2^64 elements"},
      {"byte count overflows", file_bytes("{" + tensor("x", "F64", "[4294967296,1073741824]", "[0,8]") + "}", eight), "2^64 bytes"},
      {"one offset", file_bytes("{" + tensor("x", "F32", "[2]", "[8]") + "}", eight), "[begin, end]"},
      {"three offsets", file_bytes("{" + tensor("x", "F32", "[2]", "[0,4,8]") + "}", eight), "[begin, end]"},
      {"offsets not numbers", file_bytes("{" + tensor("x", "F32", "[2]", "[\"0\",8]") + "}", eight), "expected a number"},
      {"offsets reversed", file_bytes("{" + tensor("x", "F32", "[0]", "[8,0]") + "}", eight), "wrong order"},
      {"offsets past the end", file_bytes("{" + tensor("x", "F32", "[4]", "[0,16]") + "}", eight), "run past the end of the data"},
      {"lying shape, small offsets", file_bytes("{" + tensor("x", "F32", "[1000000000000]", "[0,8]") + "}", eight), "needs 4000000000000"},
      {"byte size != numel x dtype size", file_bytes("{" + tensor("x", "F16", "[2]", "[0,8]") + "}", eight), "hold 8 bytes"},
      {"overlapping tensors",
       file_bytes("{" + tensor("a", "F32", "[2]", "[0,8]") + "," + tensor("b", "F32", "[1]", "[4,8]") + "}", eight),
       "overlap"},
      {"zero-size tensor inside another",
       file_bytes("{" + tensor("a", "F32", "[2]", "[0,8]") + "," + tensor("b", "F32", "[0]", "[4,4]") + "}", eight),
       "overlap"},
      {"hole between tensors",
       file_bytes("{" + tensor("a", "F32", "[1]", "[0,4]") + "," + tensor("b", "F32", "[0]", "[8,8]") + "}", eight),
       "bytes [4, 8) belong to no tensor"},
      {"trailing bytes", file_bytes("{" + tensor("x", "F32", "[1]", "[0,4]") + "}", eight), "last 4 data bytes"},
      {"duplicate names", file_bytes("{" + good + "," + good + "}", eight), "duplicate key \"x\""},
      {"metadata not strings", file_bytes(R"({"__metadata__":{"format":1}})"), "__metadata__: format"},
      {"metadata not an object", file_bytes(R"({"__metadata__":[]})"), "__metadata__"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    std::string message = read_error(dir, c.bytes);
    CHECK(message.rfind(path + ": ", 0) == 0);  // starts with the file name
    CHECK_MESSAGE(message.find(c.expected) != std::string::npos, "message: " << message);
    CHECK(message.find('\n') == std::string::npos);  // one line
  }
  CHECK_THROWS_WITH_AS(ta::read_safetensors(dir.file("missing.safetensors")),
                       doctest::Contains("missing.safetensors: cannot open"), ta::InputError);
}

TEST_CASE("safetensors: the writer refuses arrays it cannot write faithfully") {
  CHECK_THROWS_AS(ta::safetensors_bytes({{"x", {2, 2}, {1, 2, 3}}}), std::invalid_argument);
  CHECK_THROWS_AS(ta::safetensors_bytes({{"x", {-1}, {}}}), std::invalid_argument);
  CHECK_THROWS_AS(ta::safetensors_bytes({{"x", {1}, {1}}, {"x", {1}, {2}}}), std::invalid_argument);
  CHECK_THROWS_AS(ta::safetensors_bytes({{"__metadata__", {1}, {1}}}), std::invalid_argument);
  CHECK_THROWS_AS(ta::safetensors_bytes({{"bad\xff", {1}, {1}}}), std::invalid_argument);
  CHECK_THROWS_AS(ta::safetensors_bytes({}, {{"k", "a"}, {"k", "b"}}), std::invalid_argument);

  // A failed write leaves the previous file untouched.
  ScratchDir dir("safetensors");
  std::string path = dir.file("keep.safetensors");
  ta::write_safetensors(path, {{"x", {1}, {1}}});
  std::string before = ta::read_file(path);
  CHECK_THROWS(ta::write_safetensors(path, {{"x", {2}, {1}}}));
  CHECK(ta::read_file(path) == before);
}
