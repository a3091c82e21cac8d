// data/bow.h — the bag-of-words baseline: logistic regression on word sets.
//
// The first row of every comparison table: how far plain word counting gets on
// a task, in distribution and out of it, before any language model is
// involved. Words are lower-cased runs of letters, digits and non-ASCII
// bytes; the vocabulary is the words found in at least `min_count` train texts.
//
//   single text: the text's set of vocabulary words as a 0/1 vector scaled to
//                unit length, x (V);
//   text pair:   one number, the IDF-weighted cosine similarity of the two
//                word sets, standardised with the train mean and deviation.
//                (The set of shared words, tried first, stays at chance on
//                `pair`: the words two passages share are mostly "the", "of".)
//
// On top, a linear softmax layer p = softmax(W x + b) trained by full-batch
// gradient descent with heavy-ball momentum on the mean cross-entropy plus
// (l2/2)·||W||² (b is not regularised). Momentum, because plain gradient
// descent needs thousands of steps on sparse text; whenever the loss goes up
// the velocity is dropped and the step halved, so no data set can make it
// diverge. Nothing is random: the same task always gives the same numbers.
//
// Not here: the language models' tokeniser (data/bpe.h); this is deliberately
// the simplest thing that works.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tasks.h"

namespace ta::data {

struct BowOptions {
  size_t min_count = 2;        // a word must occur in this many train texts to be in the vocabulary
  double l2 = 1e-4;            // weight decay λ
  // With inputs of length about 1 the loss curvature is at most about 1/2, so a
  // step of 2 is stable; momentum then makes each step count for up to 10.
  double learning_rate = 2.0;
  double momentum = 0.9;
  int steps = 300;             // full-batch steps; enough to converge on the built-in tasks
};

// Lower-cased words of a text, in order, with repeats.
std::vector<std::string> bow_words(const std::string& text);

class BowClassifier {
 public:
  // Builds the vocabulary from task.train and trains on it.
  explicit BowClassifier(const Task& task, const BowOptions& options = {});

  int predict(const Example& example) const;
  double accuracy(const std::vector<Example>& split) const;  // 0 for an empty split
  size_t vocab_size() const { return vocab_.size(); }

 private:
  struct Feature {
    int id;
    double value;
  };
  void build_vocabulary(const std::vector<Example>& train, size_t min_count);
  std::vector<Feature> features(const Example& example) const;  // sparse x
  double raw_similarity(const Example& example) const;          // pair tasks, before standardising
  std::vector<double> logits(const std::vector<Feature>& x) const;  // (L)
  void train(const std::vector<std::vector<Feature>>& inputs, const std::vector<Example>& examples,
             const BowOptions& options);

  bool is_pair_ = false;
  size_t num_labels_ = 0;
  std::unordered_map<std::string, int> vocab_;
  std::vector<double> idf_;                         // (V) log(train texts / texts with the word)
  double similarity_mean_ = 0, similarity_std_ = 1;  // pair tasks: train statistics
  std::vector<double> weights_;                     // (F, L) row-major, F = V or 1 (pairs)
  std::vector<double> bias_;                        // (L)
};

}  // namespace ta::data
