// data/tsv.cpp — any TSV file is a task (load_tsv_task in tasks.h).
//
// A line is `label<TAB>text` or `label<TAB>text_a<TAB>text_b`; one column
// count for the whole task. Reading is strict because a silently skipped or
// mis-split line would change what a model is scored on: every problem throws
// InputError "file:line: problem", which the command line prints as its one
// error line. Not here: quoting or escapes (a text cannot contain a tab or a
// newline; tools that write TSV replace them with spaces).
#include <algorithm>
#include <map>

#include "data/corpus.h"
#include "data/tasks.h"

namespace ta::data {

namespace {

struct TsvRow {
  std::string label, text_a, text_b;
  size_t line = 0;
};

std::string where(const std::string& path, size_t line) { return path + ":" + std::to_string(line) + ": "; }

bool is_blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields(1);
  for (char c : line) {
    if (c == '\t') fields.emplace_back();
    else fields.back() += c;
  }
  return fields;
}

// One row from one line; `columns` is the task's column count, 0 until the first line sets it.
TsvRow parse_row(const std::string& line, const std::string& path, size_t line_number, size_t& columns,
                 const std::string& first_line_place) {
  std::vector<std::string> fields = split_tabs(line);
  if (fields.size() != 2 && fields.size() != 3)
    throw InputError(where(path, line_number) + "expected 2 or 3 tab-separated columns, got " +
                     std::to_string(fields.size()));
  if (columns != 0 && fields.size() != columns)
    throw InputError(where(path, line_number) + "expected " + std::to_string(columns) + " columns as on " +
                     first_line_place + ", got " + std::to_string(fields.size()));
  if (is_blank(fields[0])) throw InputError(where(path, line_number) + "empty label");
  for (size_t k = 1; k < fields.size(); k++)
    if (is_blank(fields[k])) throw InputError(where(path, line_number) + "empty text in column " + std::to_string(k + 1));
  TsvRow row{fields[0], fields[1], fields.size() == 3 ? fields[2] : "", line_number};
  return row;
}

// All rows of a file. `first_line_place` names where the column count was set, for the message.
std::vector<TsvRow> read_tsv(const std::string& path, size_t& columns, std::string& first_line_place) {
  std::string bytes = read_file(path);
  size_t bad = find_invalid_utf8(bytes);
  if (bad != std::string::npos) {
    size_t line_number = 1 + std::count(bytes.begin(), bytes.begin() + bad, '\n');
    throw InputError(where(path, line_number) + "invalid UTF-8 (byte " + std::to_string(bad) + ")");
  }
  std::vector<TsvRow> rows;
  size_t line_start = 0, line_number = 0;
  while (line_start < bytes.size()) {
    size_t line_end = bytes.find('\n', line_start);
    if (line_end == std::string::npos) line_end = bytes.size();
    std::string line = bytes.substr(line_start, line_end - line_start);
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a file saved with CRLF endings
    line_number++;
    if (columns == 0) first_line_place = path + ":" + std::to_string(line_number);
    rows.push_back(parse_row(line, path, line_number, columns, first_line_place));
    columns = rows.back().text_b.empty() ? 2 : 3;
    line_start = line_end + 1;
  }
  if (rows.empty()) throw InputError(path + ": no examples (an empty file)");
  return rows;
}

std::vector<Example> to_examples(const std::vector<TsvRow>& rows, const std::string& path,
                                 const std::vector<std::string>& label_names) {
  std::vector<Example> examples;
  for (const TsvRow& row : rows) {
    auto it = std::lower_bound(label_names.begin(), label_names.end(), row.label);
    if (it == label_names.end() || *it != row.label)
      throw InputError(where(path, row.line) + "label '" + row.label + "' does not occur in the train file");
    examples.push_back({static_cast<int>(it - label_names.begin()), row.text_a, row.text_b,
                        path + ":" + std::to_string(row.line)});
  }
  return examples;
}

// Carves val and/or test out of the train examples. Identical texts form one
// document, so a repeated line never lands in two splits.
void carve_splits(Task& task, bool carve_val, bool carve_test, uint64_t seed) {
  std::map<std::string, int> document_of_text;
  std::vector<int> document_labels, document_of_example;
  for (const Example& e : task.train) {
    auto [it, is_new] = document_of_text.emplace(e.text_a + '\t' + e.text_b, static_cast<int>(document_labels.size()));
    if (is_new) document_labels.push_back(e.label);
    document_of_example.push_back(it->second);
  }
  std::vector<int> split_of = assign_splits(document_labels, task.label_names.size(), carve_val ? 0.1 : 0.0,
                                            carve_test ? 0.1 : 0.0, seed);
  std::vector<Example> pool = std::move(task.train);
  task.train.clear();
  for (size_t i = 0; i < pool.size(); i++) {
    int split = split_of[document_of_example[i]];
    (split == 0 ? task.train : split == 1 ? task.val : task.test).push_back(std::move(pool[i]));
  }
}

}  // namespace

Task load_tsv_task(const std::string& train_path, uint64_t seed) {
  size_t columns = 0;
  std::string first_line_place;
  std::vector<TsvRow> train_rows = read_tsv(train_path, columns, first_line_place);
  Task task;
  task.name = train_path;
  for (const TsvRow& row : train_rows) task.label_names.push_back(row.label);
  std::sort(task.label_names.begin(), task.label_names.end());
  task.label_names.erase(std::unique(task.label_names.begin(), task.label_names.end()), task.label_names.end());
  task.train = to_examples(train_rows, train_path, task.label_names);

  size_t slash = train_path.find_last_of('/');
  std::string folder = slash == std::string::npos ? "" : train_path.substr(0, slash + 1);
  bool has_sibling[3] = {false, false, false};
  const char* sibling_names[3] = {"val.tsv", "test.tsv", "ood.tsv"};
  std::vector<Example>* sibling_splits[3] = {&task.val, &task.test, &task.ood};
  for (int s = 0; s < 3; s++) {
    std::string path = folder + sibling_names[s];
    if (path == train_path || !file_exists(path)) continue;
    has_sibling[s] = true;
    *sibling_splits[s] = to_examples(read_tsv(path, columns, first_line_place), path, task.label_names);
  }
  if (!has_sibling[0] || !has_sibling[1]) carve_splits(task, !has_sibling[0], !has_sibling[1], seed);
  return task;
}

}  // namespace ta::data
