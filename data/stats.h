#pragma once
// `shopclip data stats`: the numbers behind the data-exploration page, per split (train, valid,
// test): query length in characters and in words, relevant images per query, image width,
// height, aspect ratio, file size, hue and saturation, the most frequent words, the domain terms
// (words far more frequent in the queries than in general Chinese, as the segmenter's dictionary
// counts it) and how much of valid/test's vocabulary train never shows.
//
// Streams every file once: memory holds the histograms and one word-count table per split (its
// distinct words), never the rows themselves. Bad rows are counted and skipped, not fatal.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace shopclip::data {

class WordSegmenter;

// Counts over fixed bins: bin i holds values in [edges[i], edges[i + 1]); values below the first
// edge go to the first bin and values at or above the last edge to the last bin (so nothing is
// lost, and the last bin reads "and above"). NaN is ignored.
struct Histogram {
  std::vector<double> edges;         // bins + 1 ascending edges
  std::vector<std::int64_t> counts;  // one per bin
  std::int64_t values = 0;           // weight added so far (= the sum of counts)
  double sum = 0, min = 0, max = 0;  // over the values added (min/max valid when values > 0)

  // Bins of equal width from `low` to `high`.
  static Histogram uniform(double low, double high, int bins);
  // Bins of equal ratio from `low` to `high` (> low > 0): for sizes spanning orders of magnitude.
  static Histogram geometric(double low, double high, int bins);
  void add(double value, std::int64_t weight = 1);
  void merge(const Histogram& other);  // same edges required (std::invalid_argument otherwise)
  std::int64_t total() const { return values; }
  double mean() const;
  // The value below which `q` of the mass lies, interpolated inside its bin (0 when empty).
  double quantile(double q) const;
  nlohmann::json to_json() const;
};

struct WordCount {
  std::string word;
  std::int64_t count = 0;
};

// A word far more frequent in the queries than in the dictionary's general-language counts.
struct DomainTerm {
  std::string word;
  std::int64_t count = 0;          // occurrences in all splits' queries
  double query_per_million = 0;    // per million query words
  double general_per_million = 0;  // per million dictionary words (dictionary count + 1)
  double ratio = 0;                // query_per_million / general_per_million
};

struct SplitStats {
  std::string split;
  std::string queries_file, images_file;  // empty when the split lacks that file
  std::int64_t queries = 0, images = 0;
  std::int64_t bad_query_lines = 0, bad_image_lines = 0;      // skipped (see `data check`)
  Histogram query_chars = Histogram::uniform(0, 64, 32);      // code points
  Histogram query_words = Histogram::uniform(0, 24, 24);      // segmented words
  Histogram relevant_images = Histogram::uniform(1, 21, 20);  // per query with ground truth
  Histogram width = Histogram::geometric(16, 4096, 16);       // two bins per doubling
  Histogram height = Histogram::geometric(16, 4096, 16);
  Histogram aspect = Histogram::uniform(0, 3, 30);  // width / height
  Histogram file_kib = Histogram::geometric(0.5, 2048, 24);
  // Hue in degrees over chromatic pixels (saturation and value >= 0.15), saturation over all
  // pixels; both count sampled pixels (every StatsOptions::pixel_stride-th in x and y).
  Histogram hue = Histogram::uniform(0, 360, 36);
  Histogram saturation = Histogram::uniform(0, 1, 20);
  std::map<std::string, std::int64_t> word_counts;  // every word of the split's queries
  std::int64_t word_tokens = 0;
};

// Vocabulary of a split that train never shows.
struct UnseenVocabulary {
  std::string split;
  std::int64_t word_types = 0, unseen_word_types = 0;
  std::int64_t word_tokens = 0, unseen_word_tokens = 0;
  std::int64_t char_types = 0, unseen_char_types = 0;
  double unseen_type_share() const;   // unseen_word_types / word_types (0 when none)
  double unseen_token_share() const;  // unseen_word_tokens / word_tokens
  std::vector<WordCount> examples;    // the most frequent unseen words
};

struct DatasetStats {
  std::string root;
  std::vector<SplitStats> splits;  // train, valid, test: those present, in that order
  std::map<std::string, std::vector<WordCount>> top_words;  // per split, most frequent first
  std::vector<DomainTerm> domain_terms;                     // highest ratio first
  std::vector<UnseenVocabulary> unseen;                     // per split other than train
  double seconds = 0;

  // Every number above (word tables truncated to their top entries).
  nlohmann::json to_json() const;
};

struct StatsOptions {
  int threads = 0;           // image decoding; 0 = all cores; results do not depend on it
  int top_words = 30;        // per split
  int domain_terms = 30;     // how many to keep
  int min_domain_count = 5;  // a domain term occurs at least this often
  int pixel_stride = 4;      // colour statistics sample every n-th pixel in x and y
  int image_batch = 256;     // images decoded per parallel batch
};

// Progress: bytes of input read so far and in total (all files of all splits).
using StatsProgress = std::function<void(std::int64_t done_bytes, std::int64_t total_bytes)>;

// Computes the statistics of the MUGE dataset in `root` ({split}_texts.jsonl or
// {split}_queries.jsonl, {split}_imgs.tsv). Throws DataError naming `root` when no split file
// is there at all.
DatasetStats compute_dataset_stats(const std::string& root, const WordSegmenter& segmenter,
                                   const StatsOptions& options, const StatsProgress& progress = {});

// Whether a segmenter token is a word worth counting: it holds a letter, digit or CJK
// character (punctuation and symbols are not words).
bool is_countable_word(const std::string& token);

// Hue in degrees [0, 360) of an 8-bit RGB pixel that is not grey (max > min), rounded once, so
// that a hue exactly on a 10-degree bin edge (255, 85, 0 -> 20) lands in the bin it starts.
double hue_degrees(int r, int g, int b);

// Number of Unicode code points of valid UTF-8 (each invalid byte counts as one).
std::int64_t count_code_points(std::string_view text);

}  // namespace shopclip::data
