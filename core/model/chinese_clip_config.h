#pragma once
// Architecture of a Chinese-CLIP model, read from Chinese-CLIP's own model-config JSON files as
// they are shipped (cn_clip/clip/model_configs/): one for the vision tower (e.g. ViT-B-16.json,
// RN50.json) and one for the text tower (e.g. RoBERTa-wwm-ext-base-chinese.json,
// RBT3-chinese.json). Any width and depth is accepted, so tests can build small models.

#include <string>
#include <vector>

namespace shopclip {

struct ClipVisionConfig {
  int embed_dim = 512;         // "embed_dim": the shared embedding size (both towers project to it)
  int image_resolution = 224;  // "image_resolution"
  // "vision_layers": an integer = a vision transformer with that many blocks; a list of four
  // integers = a ModifiedResNet with that many bottlenecks per stage (RN50.json writes the list
  // as a string, "[3,4,6,3]", which is read the same).
  int transformer_layers = 12;
  std::vector<int> resnet_layers;
  int width = 768;      // "vision_width": transformer width, or the ResNet's base width
  int patch_size = 16;  // "vision_patch_size" (transformer only; null for a ResNet)
  int head_width = 64;  // "vision_head_width" (optional; ViT-H-14 uses 80)

  bool is_resnet() const { return !resnet_layers.empty(); }
  // Chinese-CLIP's rule: width / head_width heads for the transformer, width * 32 / head_width
  // for the ResNet's attention pooling.
  int heads() const { return is_resnet() ? width * 32 / head_width : width / head_width; }
};

struct ClipTextConfig {
  int vocab_size = 21128;             // "vocab_size"
  int hidden_size = 768;              // "text_hidden_size"
  int num_hidden_layers = 12;         // "text_num_hidden_layers"
  int num_attention_heads = 12;       // "text_num_attention_heads"
  int intermediate_size = 3072;       // "text_intermediate_size"
  int max_position_embeddings = 512;  // "text_max_position_embeddings"
  int type_vocab_size = 2;            // "text_type_vocab_size"
  std::string hidden_act = "gelu";    // "text_hidden_act" (only gelu is supported)
  double layer_norm_eps = 1e-12;      // BERT's; not in the JSON
};

struct ChineseClipConfig {
  ClipVisionConfig vision;
  ClipTextConfig text;

  // Reads the two JSON files. Throws std::invalid_argument naming the file and the key for a
  // missing, mistyped or unknown key, or an unsupported value.
  static ChineseClipConfig from_json_files(const std::string& vision_json,
                                           const std::string& text_json);
  // The same from JSON text; `vision_name` / `text_name` are used in error messages.
  static ChineseClipConfig from_json_text(const std::string& vision_text,
                                          const std::string& vision_name,
                                          const std::string& text_text,
                                          const std::string& text_name);
};

}  // namespace shopclip
