// data/pretraining.cpp — see pretraining.h.
#include "data/pretraining.h"

#include <algorithm>

#include "data/brown.h"
#include "data/json.h"

namespace ta::data {

namespace {

std::vector<std::string> split_ids(const std::string& ids) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t bar; (bar = ids.find('|', start)) != std::string::npos; start = bar + 1) parts.push_back(ids.substr(start, bar - start));
  parts.push_back(ids.substr(start));
  return parts;
}

// Every address that no task evaluates on, in year order.
std::vector<Document> sotu_documents() {
  const std::set<std::string> evaluated = evaluation_documents(load_task("era"));
  std::vector<Document> documents;
  for (Address& a : load_sotu_addresses()) {
    std::string id = "sotu:" + a.id;
    if (!is_held_out(a) && !evaluated.count(id)) documents.push_back({std::move(id), std::move(a.text)});
  }
  return documents;
}

// The train split of a task, one document per example (a pair's two texts on two lines).
std::vector<Document> task_documents(const std::string& task_name) {
  const Task task = load_task(task_name);
  std::vector<Document> documents;
  for (size_t i = 0; i < task.train.size(); i++) {
    const Example& e = task.train[i];
    std::string id = e.doc.empty() ? "task:" + task_name + "#" + std::to_string(i) : e.doc;
    documents.push_back({std::move(id), e.text_b.empty() ? e.text_a : e.text_a + "\n" + e.text_b});
  }
  return documents;
}

std::vector<Document> file_document(const std::string& path) {
  std::string text = read_file(path);
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string::npos) throw InputError(path + ": invalid UTF-8 at byte " + std::to_string(bad));
  return {{"file:" + path, std::move(text)}};
}

std::vector<Document> source_documents(const std::string& source) {
  if (source == "sotu") return sotu_documents();
  if (source == "brown") return brown_documents();
  if (source.rfind("task:", 0) == 0) {
    const std::string name = source.substr(5);
    if (name.empty()) throw InputError("--corpus " + source + ": name a task after 'task:' (spam, era, pair or a TSV file)");
    return task_documents(name);
  }
  if (!file_exists(source))
    throw InputError("--corpus: '" + source + "' is not a corpus (sotu, brown, task:NAME) and no such file");
  return file_document(source);
}

}  // namespace

std::vector<Document> corpus_documents(const std::string& spec) {
  std::vector<Document> documents;
  std::set<std::string> seen;
  size_t start = 0;
  for (size_t comma = 0; comma != std::string::npos; start = comma + 1) {
    comma = spec.find(',', start);
    const std::string source = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (source.empty()) continue;
    if (!seen.insert(source).second) throw InputError("--corpus " + spec + ": '" + source + "' is given twice");
    for (Document& d : source_documents(source)) documents.push_back(std::move(d));
  }
  if (seen.empty()) throw InputError("--corpus is empty: give sotu, brown, task:NAME or a file, comma-separated");
  return documents;
}

std::string corpus_text(const std::string& spec) {
  std::string text;
  for (const Document& d : corpus_documents(spec)) {
    if (!text.empty()) text += "\n\n";
    text += d.text;
  }
  return text;
}

std::set<std::string> evaluation_documents(const Task& task) {
  std::set<std::string> ids;
  for (const auto* split : {&task.val, &task.test, &task.ood})
    for (const Example& e : *split)
      if (!e.doc.empty())
        for (std::string& id : split_ids(e.doc)) ids.insert(std::move(id));
  return ids;
}

std::set<std::string> forbidden_documents(const std::vector<std::string>& document_ids) {
  std::set<std::string> data_sets;
  for (const std::string& ids : document_ids)
    for (const std::string& id : split_ids(ids)) data_sets.insert(id.substr(0, id.find(':')));
  std::set<std::string> forbidden;
  if (data_sets.count("sotu")) {
    forbidden = evaluation_documents(load_task("era"));  // pair cuts the same addresses
    for (const Address& a : load_sotu_addresses())
      if (is_held_out(a)) forbidden.insert("sotu:" + a.id);
  }
  if (data_sets.count("spam-assassin")) forbidden.merge(evaluation_documents(load_task("spam")));
  if (data_sets.count("brown"))
    for (const BrownFile& file : load_brown())
      if (is_brown_probe_test(file.id)) forbidden.insert("brown:" + file.id);
  return forbidden;
}

void check_no_leakage(const std::vector<std::string>& documents, const std::set<std::string>& forbidden,
                      const std::string& what) {
  std::vector<std::string> leaked;
  for (const std::string& ids : documents)
    for (const std::string& id : split_ids(ids))
      if (forbidden.count(id) && std::find(leaked.begin(), leaked.end(), id) == leaked.end()) leaked.push_back(id);
  if (leaked.empty()) return;
  std::string examples;
  for (size_t i = 0; i < std::min<size_t>(3, leaked.size()); i++) examples += (i ? ", " : "") + leaked[i];
  throw InputError(what + ": " + std::to_string(leaked.size()) + " document(s) that a task evaluates on (" + examples +
                   (leaked.size() > 3 ? ", ..." : "") + ") would be pretrained on");
}

void write_manifest(const std::string& model_dir, const PretrainingManifest& m) {
  json::Value v = json::Value::object();
  v.set("corpus", m.corpus);
  v.set("init", m.init);
  v.set("train_tokens", m.train_tokens);
  v.set("val_tokens", m.val_tokens);
  json::Value documents = json::Value::array(), counts = json::Value::array();
  for (const std::string& id : m.documents) documents.push(id);
  for (long long c : m.token_counts) counts.push(c);
  v.set("documents", documents);
  v.set("token_counts", counts);
  write_file_atomic(model_dir + "/pretraining.json", v.dump() + "\n");
}

bool read_manifest(const std::string& model_dir, PretrainingManifest& m) {
  const std::string path = model_dir + "/pretraining.json";
  if (!file_exists(path)) return false;
  const json::Value v = json::parse_file(path);
  if (!v.is_object()) throw InputError(path + ": expected a JSON object");
  m.corpus = v.at("corpus", path).as_string(path + ": corpus");
  m.init = v.at("init", path).as_string(path + ": init");
  m.train_tokens = v.at("train_tokens", path).as_int(path + ": train_tokens", 0);
  m.val_tokens = v.at("val_tokens", path).as_int(path + ": val_tokens", 0);
  m.documents.clear();
  for (const json::Value& id : v.at("documents", path).items(path + ": documents")) m.documents.push_back(id.as_string(path + ": documents"));
  m.token_counts.clear();
  for (const json::Value& c : v.at("token_counts", path).items(path + ": token_counts"))
    m.token_counts.push_back(c.as_int(path + ": token_counts", 0));
  return true;
}

}  // namespace ta::data
