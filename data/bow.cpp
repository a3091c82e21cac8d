// data/bow.cpp — see bow.h.
#include "data/bow.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

namespace ta::data {

std::vector<std::string> bow_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    unsigned char byte = static_cast<unsigned char>(c);
    // Non-ASCII bytes count as letters, so an accented or CJK word stays whole.
    if (std::isalnum(byte) || byte >= 0x80) {
      word += static_cast<char>(std::tolower(byte));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

static std::set<std::string> word_set(const std::string& text) {
  std::vector<std::string> words = bow_words(text);
  return std::set<std::string>(words.begin(), words.end());
}

void BowClassifier::build_vocabulary(const std::vector<Example>& train, size_t min_count) {
  std::map<std::string, size_t> texts_with_word;  // sorted, so word ids do not depend on hashing
  size_t num_texts = 0;
  for (const Example& e : train)
    for (const std::string* text : {&e.text_a, &e.text_b}) {
      if (text->empty()) continue;
      num_texts++;
      for (const std::string& w : word_set(*text)) texts_with_word[w]++;
    }
  for (const auto& [word, count] : texts_with_word) {
    if (count < min_count) continue;
    vocab_.emplace(word, static_cast<int>(idf_.size()));
    idf_.push_back(std::log(static_cast<double>(num_texts) / static_cast<double>(count)));
  }
}

// cos(a, b) with each word of a text weighted by its IDF: rare shared words count most.
double BowClassifier::raw_similarity(const Example& example) const {
  std::set<std::string> a = word_set(example.text_a), b = word_set(example.text_b);
  double dot = 0, norm_a = 0, norm_b = 0;
  for (const std::string& w : a) {
    auto it = vocab_.find(w);
    if (it == vocab_.end()) continue;
    double weight = idf_[it->second] * idf_[it->second];
    norm_a += weight;
    if (b.count(w)) dot += weight;
  }
  for (const std::string& w : b) {
    auto it = vocab_.find(w);
    if (it != vocab_.end()) norm_b += idf_[it->second] * idf_[it->second];
  }
  return (norm_a > 0 && norm_b > 0) ? dot / std::sqrt(norm_a * norm_b) : 0.0;
}

std::vector<BowClassifier::Feature> BowClassifier::features(const Example& example) const {
  if (is_pair_) return {{0, (raw_similarity(example) - similarity_mean_) / similarity_std_}};
  std::vector<Feature> x;
  for (const std::string& w : word_set(example.text_a)) {
    auto it = vocab_.find(w);
    if (it != vocab_.end()) x.push_back({it->second, 0.0});
  }
  for (Feature& f : x) f.value = 1.0 / std::sqrt(static_cast<double>(x.size()));  // unit length
  return x;
}

std::vector<double> BowClassifier::logits(const std::vector<Feature>& x) const {
  std::vector<double> z = bias_;
  for (const Feature& f : x)
    for (size_t l = 0; l < num_labels_; l++) z[l] += f.value * weights_[f.id * num_labels_ + l];
  return z;
}

// Softmax in place, shifted by the maximum for stability.
static void softmax(std::vector<double>& z) {
  double top = *std::max_element(z.begin(), z.end()), sum = 0;
  for (double& v : z) sum += (v = std::exp(v - top));
  for (double& v : z) v /= sum;
}

BowClassifier::BowClassifier(const Task& task, const BowOptions& options)
    : is_pair_(task.is_pair()), num_labels_(task.label_names.size()) {
  build_vocabulary(task.train, options.min_count);
  weights_.assign((is_pair_ ? 1 : vocab_.size()) * num_labels_, 0.0);
  bias_.assign(num_labels_, 0.0);
  if (task.train.empty()) return;
  if (is_pair_) {
    // Standardise the one similarity feature so gradient descent needs no special step size for it.
    std::vector<double> similarities;
    for (const Example& e : task.train) similarities.push_back(raw_similarity(e));
    double sum = 0, sum_squares = 0;
    for (double s : similarities) sum += s, sum_squares += s * s;
    similarity_mean_ = sum / similarities.size();
    double variance = sum_squares / similarities.size() - similarity_mean_ * similarity_mean_;
    similarity_std_ = variance > 1e-12 ? std::sqrt(variance) : 1.0;
  }
  std::vector<std::vector<Feature>> inputs;
  for (const Example& e : task.train) inputs.push_back(features(e));
  train(inputs, task.train, options);
}

void BowClassifier::train(const std::vector<std::vector<Feature>>& inputs, const std::vector<Example>& examples,
                          const BowOptions& options) {
  double inverse_n = 1.0 / static_cast<double>(examples.size());
  double learning_rate = options.learning_rate, previous_loss = INFINITY;
  bool just_restarted = false;
  std::vector<double> weight_grad(weights_.size()), bias_grad(num_labels_);
  std::vector<double> weight_velocity(weights_.size(), 0.0), bias_velocity(num_labels_, 0.0);
  for (int step = 0; step < options.steps; step++) {
    std::fill(weight_grad.begin(), weight_grad.end(), 0.0);
    std::fill(bias_grad.begin(), bias_grad.end(), 0.0);
    double loss = 0;
    for (size_t i = 0; i < examples.size(); i++) {
      // d(cross-entropy)/d(logits) = softmax - one_hot(label), averaged over the set.
      std::vector<double> delta = logits(inputs[i]);
      softmax(delta);
      loss -= std::log(std::max(delta[examples[i].label], 1e-300)) * inverse_n;
      delta[examples[i].label] -= 1.0;
      for (size_t l = 0; l < num_labels_; l++) {
        bias_grad[l] += delta[l] * inverse_n;
        for (const Feature& f : inputs[i]) weight_grad[f.id * num_labels_ + l] += delta[l] * f.value * inverse_n;
      }
    }
    for (size_t k = 0; k < weights_.size(); k++) loss += 0.5 * options.l2 * weights_[k] * weights_[k];
    // Adaptive restart (O'Donoghue & Candes, 2015): when the loss goes up,
    // momentum has overshot, so the velocity is dropped; if even the plain step
    // right after a restart went up, the step itself is too long and is halved.
    if (loss > previous_loss + 1e-12) {
      if (just_restarted) learning_rate *= 0.5;
      std::fill(weight_velocity.begin(), weight_velocity.end(), 0.0);
      std::fill(bias_velocity.begin(), bias_velocity.end(), 0.0);
      just_restarted = true;
    } else {
      just_restarted = false;
    }
    previous_loss = loss;
    for (size_t k = 0; k < weights_.size(); k++) {
      weight_velocity[k] = options.momentum * weight_velocity[k] + weight_grad[k] + options.l2 * weights_[k];
      weights_[k] -= learning_rate * weight_velocity[k];
    }
    for (size_t l = 0; l < num_labels_; l++) {
      bias_velocity[l] = options.momentum * bias_velocity[l] + bias_grad[l];
      bias_[l] -= learning_rate * bias_velocity[l];
    }
  }
}

int BowClassifier::predict(const Example& example) const {
  std::vector<double> z = logits(features(example));
  return static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
}

double BowClassifier::accuracy(const std::vector<Example>& split) const {
  if (split.empty()) return 0.0;
  size_t correct = 0;
  for (const Example& e : split) correct += predict(e) == e.label;
  return static_cast<double>(correct) / static_cast<double>(split.size());
}

}  // namespace ta::data
