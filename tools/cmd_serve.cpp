// tools/cmd_serve.cpp — `tinyadapt serve`: many users' adapters on one base
// model, requests answered in mixed batches (adapt/serving.h).
//
// users.tsv, one user a line: `user<TAB>adapter dir`. A relative dir is read
// relative to the folder of users.tsv; an empty dir column or `-` declares a
// base-only user (generation with the plain base model). Blank lines and
// lines starting with '#' are skipped. A malformed line (no tab, an empty
// user name, a third column, a user declared twice) stops the server at
// startup with "users.tsv:LINE: problem" and exit status 2. An adapter that
// cannot be loaded or mixed (a missing file, finetune / BitFit, ...) does not
// stop it: the problem is printed on stderr and each of that user's requests
// answers it.
//
// Requests: JSON lines on stdin (or --input FILE),
//   {"id": any, "user": "name", "text": "..."}                       classification
//   {"id": any, "user": "name", "text": "...", "max_new": N}         generation (N >= 1)
// with an optional "seed" (generation; default --seed). Up to --batch
// requests are read, then answered together (the classifications in mixed
// batches of similar lengths, ServingModel::length_groups; the generations in
// one mixed batch), one JSON line per request, in input order:
//   {"id": ..., "user": ..., "label": "spam", "probs": {"spam": 0.93, "ham": 0.07}}
//   {"id": ..., "user": ..., "text": "the continuation"}
//   {"id": ..., "error": "why"}      (id null when the line is not JSON)
// Errors answer that request only: a line that is not a JSON object, a
// missing or mistyped field, an unknown field, an unknown user, a user whose
// adapter failed to load, classification asked of an adapter with no head, a
// text that does not fit the context. Nothing falls back to the base model.
// Generation stops at <|endoftext|> (not included) when the tokenizer has it.
//
// When to answer: a batch is answered when --batch requests are pending, when
// the input ends, or when requests are pending and no new line has arrived
// for --wait-ms milliseconds. So a client that sends one request and waits
// gets its answer after --wait-ms, while a stream of requests still fills
// whole batches. The input is read through poll(2) and read(2) on the file
// descriptor (LineReader), as a C++ stream cannot wait with a timeout.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "adapt/serving.h"
#include "data/corpus.h"
#include "data/json.h"
#include "tools/cli.h"

namespace ta::cli {
namespace {

// Reads users.tsv into `server`; InputError "path:line: problem" for a bad line.
void add_users(adapt::ServingModel& server, const std::string& path) {
  const std::string text = read_file(path);
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  size_t start = 0;
  for (int line_number = 1; start < text.size(); line_number++) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::string where = path + ":" + std::to_string(line_number) + ": ";
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) throw InputError(where + "expected user<TAB>adapter dir");
    const std::string user = line.substr(0, tab), dir = line.substr(tab + 1);
    if (user.empty()) throw InputError(where + "the user name is empty");
    if (dir.find('\t') != std::string::npos) throw InputError(where + "expected two columns, user<TAB>adapter dir");
    if (server.user_index(user) >= 0) throw InputError(where + "user '" + user + "' is declared twice");
    std::string adapter_dir;  // "" = base only
    if (!dir.empty() && dir != "-") adapter_dir = std::filesystem::path(dir).is_absolute() ? dir : (folder / dir).string();
    const adapt::ServingUser& added = server.user(server.add_user(user, adapter_dir));
    if (!added.error.empty()) std::fprintf(stderr, "serve: user '%s' cannot be served: %s\n", user.c_str(), added.error.c_str());
  }
}

// Lines of a file descriptor, each read with an optional deadline.
class LineReader {
 public:
  enum class Result { Line, Timeout, End };
  LineReader(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}

  // The next line (without its '\n') in `line`. With timeout_ms >= 0, gives
  // up with Timeout when no new input arrives for that long; -1 waits until
  // a line or the end. A last line without '\n' counts as a line.
  Result next(std::string& line, int timeout_ms) {
    for (;;) {
      const size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return Result::Line;
      }
      if (ended_) {
        if (buffer_.empty()) return Result::End;
        line.swap(buffer_);
        buffer_.clear();
        return Result::Line;
      }
      if (timeout_ms >= 0) {
        pollfd ready{fd_, POLLIN, 0};
        const int n = poll(&ready, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw InputError(name_ + ": cannot wait for input: " + std::strerror(errno));
        if (n == 0) return Result::Timeout;
      }
      char chunk[65536];
      const ssize_t got = read(fd_, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw InputError(name_ + ": cannot read: " + std::strerror(errno));
      if (got == 0) ended_ = true;
      else buffer_.append(chunk, static_cast<size_t>(got));
    }
  }

 private:
  int fd_;
  std::string name_;
  std::string buffer_;  // read but not yet returned
  bool ended_ = false;
};

// One input line: the response is written in `answer` (an error, or filled in after the batch runs).
struct Pending {
  json::Value id;
  std::string user;
  adapt::ServeRequest request;
  json::Value answer;  // set when the line already has its (error) answer
};

json::Value error_answer(const json::Value& id, const std::string& message) {
  json::Value answer = json::Value::object();
  answer.set("id", id);
  answer.set("error", message);
  return answer;
}

// Parses and checks one line against `server`; an unservable one gets its error answer.
Pending parse_request(const std::string& line, long long line_number, const adapt::ServingModel& server,
                      uint64_t default_seed) {
  Pending p;
  try {
    const json::Value v = json::parse(line, "input line " + std::to_string(line_number));
    if (!v.is_object()) throw InputError("a request is a JSON object");
    if (const json::Value* id = v.find("id")) p.id = *id;
    for (const auto& [key, value] : v.members())
      if (key != "id" && key != "user" && key != "text" && key != "max_new" && key != "seed")
        throw InputError("unknown field \"" + key + "\" (fields: id, user, text, max_new, seed)");
    for (const char* field : {"id", "user", "text"})
      if (!v.find(field)) throw InputError(std::string("missing field \"") + field + "\"");
    p.user = v.at("user").as_string("\"user\"");
    const std::string& text = v.at("text").as_string("\"text\"");
    p.request.user = server.user_index(p.user);
    if (p.request.user < 0) throw InputError("unknown user '" + p.user + "'");
    if (const json::Value* max_new = v.find("max_new"))
      p.request.max_new = static_cast<int>(max_new->as_int("\"max_new\" (tokens to generate)", 1, server.model().config().n_positions));
    p.request.seed = default_seed;
    if (const json::Value* seed = v.find("seed")) p.request.seed = static_cast<uint64_t>(seed->as_int("\"seed\"", 0));
    p.request.ids = server.tokenizer().encode(text, {false, "\"text\""});
    const std::string problem = server.check(p.request);
    if (!problem.empty()) throw InputError(problem);
  } catch (const InputError& e) {
    p.answer = error_answer(p.id, e.what());
  }
  return p;
}

// Generated bytes may end inside a UTF-8 character: invalid bytes become U+FFFD so the output stays JSON.
std::string valid_utf8(std::string bytes) {
  std::string out;
  for (size_t bad; (bad = data::find_invalid_utf8(bytes)) != std::string::npos; bytes.erase(0, bad + 1))
    out += bytes.substr(0, bad) + "\xEF\xBF\xBD";
  return out + bytes;
}

// Answers every pending request that has no answer yet: classifications (in length groups), then generations.
void run_batch(std::vector<Pending>& batch, const adapt::ServingModel& server, float temperature, int stop_token) {
  std::vector<Pending*> to_classify, to_generate;
  for (Pending& p : batch)
    if (p.answer.is_null()) (p.request.max_new > 0 ? to_generate : to_classify).push_back(&p);
  auto requests_of = [](const std::vector<Pending*>& pending) {
    std::vector<adapt::ServeRequest> requests;
    for (const Pending* p : pending) requests.push_back(p->request);
    return requests;
  };
  auto answer_of = [](const Pending& p) {
    json::Value answer = json::Value::object();
    answer.set("id", p.id);
    answer.set("user", p.user);
    return answer;
  };
  if (!to_classify.empty()) {
    const std::vector<adapt::Classification> results = server.classify(requests_of(to_classify));
    for (size_t i = 0; i < results.size(); i++) {
      Pending& p = *to_classify[i];
      const std::vector<std::string>& labels = server.user(p.request.user).head->config().label_names;
      json::Value probs = json::Value::object();
      for (size_t l = 0; l < labels.size(); l++) probs.set(labels[l], static_cast<double>(results[i].probs[l]));
      p.answer = answer_of(p);
      p.answer.set("label", labels[static_cast<size_t>(results[i].label)]);
      p.answer.set("probs", probs);
    }
  }
  if (!to_generate.empty()) {
    const std::vector<std::vector<int>> results = server.generate(requests_of(to_generate), temperature, stop_token);
    for (size_t i = 0; i < results.size(); i++) {
      Pending& p = *to_generate[i];
      p.answer = answer_of(p);
      p.answer.set("text", valid_utf8(server.tokenizer().decode(results[i])));
    }
  }
  for (const Pending& p : batch) std::printf("%s\n", p.answer.dump().c_str());
  std::fflush(stdout);
}

int run_serve(Args& args) {
  const std::string model_dir = args.required("model"), users_path = args.required("adapters");
  const long long batch_size = args.integer("batch", 16);
  const float temperature = static_cast<float>(args.real("temperature", 1.0));
  const uint64_t seed = static_cast<uint64_t>(args.integer("seed", 1337));
  const std::string input_path = args.str("input", "");
  const long long wait_ms = args.integer("wait-ms", 10);
  const bool bf16 = args.flag("bf16");
  args.finish();
  if (batch_size < 1) throw InputError("--batch must be at least 1");
  if (temperature < 0) throw InputError("--temperature must be >= 0");
  if (wait_ms < 0 || wait_ms > 3600000) throw InputError("--wait-ms must be in [0, 3600000]");

  NoGradGuard no_grad;
  adapt::ServingModel server(model_dir);
  add_users(server, users_path);
  if (bf16) server.store_base_in_bf16();  // once every user's adaptation is attached
  int fd = 0;  // stdin
  if (!input_path.empty()) {
    fd = open(input_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(input_path + ": cannot open: " + std::strerror(errno));
  }
  LineReader in(fd, input_path.empty() ? "stdin" : input_path);
  const int stop_token = server.tokenizer().has_special("<|endoftext|>") ? server.tokenizer().special_id("<|endoftext|>") : -1;
  std::vector<Pending> batch;
  long long line_number = 0;
  for (std::string line;;) {
    // With nothing pending, wait for input as long as it takes.
    const LineReader::Result got = in.next(line, batch.empty() ? -1 : static_cast<int>(wait_ms));
    if (got == LineReader::Result::End) break;
    if (got == LineReader::Result::Timeout) {  // requests pending and the input is quiet: answer them now
      run_batch(batch, server, temperature, stop_token);
      batch.clear();
      continue;
    }
    line_number++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines are not requests
    batch.push_back(parse_request(line, line_number, server, seed));
    if (static_cast<long long>(batch.size()) == batch_size) {
      run_batch(batch, server, temperature, stop_token);
      batch.clear();
    }
  }
  if (!batch.empty()) run_batch(batch, server, temperature, stop_token);
  if (fd != 0) close(fd);
  return 0;
}

}  // namespace

static Command serve_cmd{
    "serve", "answer JSON-line requests of many users, each with their own adapter, in mixed batches",
    "usage: tinyadapt serve --model DIR --adapters users.tsv [--batch N] [--wait-ms W] [--temperature T] [--seed S] [--input FILE]\n"
    "                       [--bf16]\n"
    "  --adapters FILE    user<TAB>adapter dir per line (relative to FILE's folder; '-' or empty = base only)\n"
    "  --batch N          requests answered together [16]\n"
    "  --wait-ms W        answer the pending requests once no new line has come for W ms [10]\n"
    "  --temperature T    generation: 0 = greedy [1.0]\n"
    "  --seed S           generation: the sampling seed of a request without \"seed\" [1337]\n"
    "  --input FILE       read requests from FILE instead of stdin\n"
    "  --bf16             the shared base's matrices in bfloat16: half the memory; faster on CPUs with AVX512-BF16\n"
    "Requests: {\"id\", \"user\", \"text\"} classifies with the user's head; add \"max_new\": N to generate.\n"
    "Answers, one line each in input order: {\"id\", \"user\", \"label\", \"probs\"}, {\"id\", \"user\", \"text\"}\n"
    "or {\"id\", \"error\"}.",
    run_serve};

}  // namespace ta::cli
