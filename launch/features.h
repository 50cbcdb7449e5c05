#pragma once
// `shopclip encode` and `shopclip search`: features in Chinese-CLIP's feature-file format, and
// top-k predictions (and scores) from such files.
//
// encode writes OUT/image_features.jsonl ({"image_id": id, "feature": [...]}) and
// OUT/text_features.jsonl ({"text_id": id, "feature": [...]}), one line per image or query, in
// input order. With a Chinese-CLIP model the features are the raw projections, before L2
// normalisation (--normalize writes them normalised, as Chinese-CLIP's extract_features does);
// with a shopclip run they are shopclip's own unit-norm embeddings.
// search L2-normalises both, finds each query's top-k images by inner product with FAISS, writes
// the predictions in MUGE format and, given the reference queries, prints the official scores.

#include <string>

#include <CLI/CLI.hpp>

#include "core/log.h"

namespace shopclip {

struct EncodeOptions {
  std::string vision_config, text_config, checkpoint;  // a Chinese-CLIP model
  std::string vocab;                                   // its vocab.txt
  std::string run;                                     // or a shopclip run directory
  std::string images, texts, out;
  int context_length = 52;
  int batch_size = 64;
  int threads = 0;
  bool normalize = false;  // L2-normalise before writing, as Chinese-CLIP's extract_features does
};

struct SearchOptions {
  std::string image_features, text_features, out, reference, index = "Flat";
  int top_k = 10;
  bool tianchi = false;
};

void add_encode_options(CLI::App* command, EncodeOptions& options);
void add_search_options(CLI::App* command, SearchOptions& options);
int run_encode(const EncodeOptions& options, Logger& log);
int run_search(const SearchOptions& options, Logger& log);

}  // namespace shopclip
