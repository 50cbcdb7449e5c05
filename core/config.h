#pragma once
// Typed configuration. Every field is declared once, in its struct's visit(), with its YAML key
// and a one-line description; parsing, unknown-key errors, `--set` overrides, the resolved-config
// dump and `shopclip config --describe` are all derived from that single list (LightGBM's
// config.h idea, without string-keyed lookups at the use sites).

#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace shopclip {

// Enum fields: each enum lists its values with their YAML names (in the order documentation and
// error messages show them); reading any other name is a ConfigError naming the key.
enum class ImageTowerType { kCnn, kVit };
enum class LossMode { kLocal, kFull };
enum class FrozenTower { kNone, kImage, kText, kBoth };
enum class AugmentRecipe { kCustom, kChineseClip };
enum class AugmentPolicy { kNone, kRandAugment, kAutoAugment };
enum class Resample { kBicubic, kBilinear };

template <class E>
using EnumNames = std::vector<std::pair<E, std::string>>;
const EnumNames<ImageTowerType>& enum_names(ImageTowerType);
const EnumNames<LossMode>& enum_names(LossMode);
const EnumNames<FrozenTower>& enum_names(FrozenTower);
const EnumNames<AugmentRecipe>& enum_names(AugmentRecipe);
const EnumNames<AugmentPolicy>& enum_names(AugmentPolicy);
const EnumNames<Resample>& enum_names(Resample);

// The YAML name of an enum value ("cnn"), for logs and messages.
template <class E>
const std::string& enum_name(E value) {
  for (const auto& [candidate, name] : enum_names(value))
    if (candidate == value) return name;
  throw std::logic_error("enum value without a name");
}

// Streams the YAML name (GoogleTest messages and fmt::streamed use this).
std::ostream& operator<<(std::ostream& out, ImageTowerType value);
std::ostream& operator<<(std::ostream& out, LossMode value);
std::ostream& operator<<(std::ostream& out, FrozenTower value);
std::ostream& operator<<(std::ostream& out, AugmentRecipe value);
std::ostream& operator<<(std::ostream& out, AugmentPolicy value);
std::ostream& operator<<(std::ostream& out, Resample value);

// A mistake in a config file or override. The message names the key path (e.g. "train.lr").
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws ConfigError("config key '<key>': <what>") unless ok. For the check() of each struct,
// which sits beside its visit() so that a field and its rules are read together.
void config_require(bool ok, const std::string& key, const std::string& what);

struct RunConfig {
  std::string dir = "runs/default";
  std::int64_t seed = 42;
  int threads = 0;
  std::string device = "cpu";

  template <class V>
  void visit(V& v) {
    v("dir", dir,
      "run directory: resolved config, metrics, checkpoints, predictions, eval results");
    v("seed", seed, "seed for initialisation, shuffling and augmentation (runs are repeatable)");
    v("threads", threads, "intra-op CPU threads for LibTorch; 0 = all cores of this machine");
    v("device", device,
      "cpu, or cuda: each rank trains and encodes on the GPU numbered by its local rank, with "
      "the NCCL backend between ranks (needs LibTorch with CUDA and a build with NCCL)");
  }
  void check() const {
    config_require(!dir.empty(), "run.dir", "must not be empty");
    config_require(threads >= 0, "run.threads", "must be >= 0");
    config_require(device == "cpu" || device == "cuda", "run.device", "must be cpu or cuda");
  }
};

struct DataConfig {
  std::string root = "";
  std::string train_split = "train";
  std::string valid_split = "valid";
  std::string test_split = "test";
  std::string prep_dir = "";
  double max_bad_share = 0.01;

  template <class V>
  void visit(V& v) {
    v("root", root,
      "folder holding the MUGE files ({split}_imgs.tsv, {split}_texts.jsonl or "
      "{split}_queries.jsonl)");
    v("train_split", train_split, "name of the training split");
    v("valid_split", valid_split, "name of the validation split (model selection, final eval)");
    v("test_split", test_split, "name of the test split (submission only; may be absent)");
    v("prep_dir", prep_dir,
      "folder of the preprocessed HDF5 shards; empty = <root>/prep-r<resolution>");
    v("max_bad_share", max_bad_share,
      "fail when the share of bad rows in any input file exceeds this (bad rows are skipped and "
      "listed)");
  }
  void check() const {
    config_require(max_bad_share >= 0 && max_bad_share <= 1, "data.max_bad_share",
                   "must be within [0, 1]");
  }
};

struct PrepConfig {
  int images_per_shard = 8192;
  int chunk_images = 32;
  int threads = 0;
  int resolution = 0;

  template <class V>
  void visit(V& v) {
    v("resolution", resolution,
      "side of the stored training-split images; 0 = model.image.resolution. Larger, with random "
      "crops, lets a crop take more pixels than the model sees (the loader resizes each augmented "
      "image to the model's side); valid and test are always stored at the model's side");
    v("images_per_shard", images_per_shard, "images per HDF5 shard file");
    v("chunk_images", chunk_images, "images per HDF5 chunk (the unit of disk reads)");
    v("threads", threads, "decode + resize worker threads; 0 = all cores");
  }
  void check() const {
    config_require(images_per_shard > 0, "prep.images_per_shard", "must be positive");
    config_require(chunk_images > 0, "prep.chunk_images", "must be positive");
    config_require(threads >= 0, "prep.threads", "must be >= 0");
    config_require(resolution >= 0, "prep.resolution", "must be >= 0");
  }
};

struct ImageTowerConfig {
  ImageTowerType type = ImageTowerType::kCnn;
  int resolution = 64;
  std::vector<int> widths = {32, 64, 128, 256};
  int patch_size = 8;
  int width = 256;
  int layers = 4;
  int heads = 4;
  int mlp = 1024;
  bool channels_last = true;

  template <class V>
  void visit(V& v) {
    v("type", type, "image tower: cnn (ResNet-style stages) or vit (vision transformer)");
    v("resolution", resolution, "input height = width in pixels (images are resized to it)");
    v("widths", widths, "cnn: channels of each stage (two 3x3 conv+BN+ReLU, first strided)");
    v("patch_size", patch_size, "vit: patch edge in pixels");
    v("width", width, "vit: token width");
    v("layers", layers, "vit: transformer blocks");
    v("heads", heads, "vit: attention heads");
    v("mlp", mlp, "vit: hidden size of each block's MLP");
    v("channels_last", channels_last,
      "cnn: compute in channels-last layout ([B, H, W, C] in memory, as the loader delivers "
      "pixels) instead of [B, C, H, W]: oneDNN's convolutions and the fused BatchNorm + ReLU "
      "are faster so on the CPU (bench_small ~3 % more samples/s). The weights and checkpoints "
      "are the same either way");
  }
  void check() const;
};

struct TextTowerConfig {
  std::string vocab = "";
  int min_count = 1;
  int context_length = 52;
  int width = 256;
  int layers = 2;
  int heads = 4;
  int mlp = 1024;

  template <class V>
  void visit(V& v) {
    v("vocab", vocab,
      "bert-base-chinese-format vocab.txt; empty = build one from the training texts");
    v("min_count", min_count, "when building the vocab: keep tokens seen at least this often");
    v("context_length", context_length, "tokens per query including [CLS] and [SEP]");
    v("width", width, "transformer width");
    v("layers", layers, "transformer blocks (pre-LayerNorm)");
    v("heads", heads, "attention heads");
    v("mlp", mlp, "hidden size of each block's MLP");
  }
  void check() const {
    config_require(context_length >= 3, "model.text.context_length", "must be >= 3");
    config_require(min_count >= 1, "model.text.min_count", "must be >= 1");
    config_require(width > 0 && heads > 0 && width % heads == 0, "model.text.heads",
                   "must divide model.text.width");
    config_require(layers > 0, "model.text.layers", "must be positive");
    config_require(mlp > 0, "model.text.mlp", "must be positive");
  }
};

// Chinese-CLIP towers in place of shopclip's own (see core/model/chinese_clip.h). Set vision_config
// and text_config to use them; model.image.resolution, model.embed_dim and model.text.vocab must
// then match the JSON files.
struct ChineseClipTowersConfig {
  std::string vision_config;
  std::string text_config;
  std::string weights;
  bool grad_checkpointing = false;

  bool enabled() const { return !vision_config.empty(); }

  template <class V>
  void visit(V& v) {
    v("vision_config", vision_config,
      "Chinese-CLIP vision model JSON (e.g. configs/chinese_clip/ViT-B-16.json); set with "
      "text_config to train Chinese-CLIP towers instead of model.image / model.text");
    v("text_config", text_config,
      "Chinese-CLIP text model JSON (e.g. RoBERTa-wwm-ext-base-chinese.json)");
    v("weights", weights,
      "pretrained weights (.safetensors from launch/convert_chinese_clip.py) loaded at the start "
      "of training; empty = random initialisation");
    v("grad_checkpointing", grad_checkpointing,
      "recompute each transformer block's activations in backward instead of storing them "
      "(less memory, about a third more compute)");
  }
  void check() const {
    config_require(vision_config.empty() == text_config.empty(), "model.chinese_clip",
                   "set both vision_config and text_config, or neither");
  }
};

// model.reranker: a small cross-attention reranker (core/model/reranker.h) that scores (query,
// image) pairs from the towers' token features. Part of the model so that a checkpoint carries
// it; trained with train.rerank_weight, used by `shopclip rerank --method learned`.
struct RerankerConfig {
  int layers = 0;
  int width = 256;
  int heads = 4;
  int mlp = 1024;
  int image_tokens = 16;

  bool enabled() const { return layers > 0; }

  template <class V>
  void visit(V& v) {
    v("layers", layers, "cross-attention blocks of the learned reranker, 1..4; 0 = no reranker");
    v("width", width, "reranker: width of its blocks (the token features are projected to it)");
    v("heads", heads, "reranker: attention heads");
    v("mlp", mlp, "reranker: hidden size of each block's MLP");
    v("image_tokens", image_tokens,
      "reranker: the image tower's grid (CNN feature map, ViT patches) average-pooled to this "
      "many tokens (a square: 1, 4, 9, 16, ...; a ViT's class token comes in addition), which "
      "is also what the pool's token cache stores; 0 = the whole grid");
  }
  void check() const;
};

struct ModelConfig {
  int embed_dim = 256;
  double init_logit_scale = 1.0 / 0.07;
  double max_logit_scale = 100.0;
  ImageTowerConfig image;
  TextTowerConfig text;
  ChineseClipTowersConfig chinese_clip;
  int distill_dim = 0;
  RerankerConfig reranker;
  std::string init;

  template <class V>
  void visit(V& v) {
    v("embed_dim", embed_dim, "dimension of the shared embedding space");
    v("init", init,
      "start training from this shopclip checkpoint's weights (e.g. runs/x/checkpoints/best.pt), "
      "loaded after model.chinese_clip.weights: its model section must describe the same "
      "towers; parameters it lacks (a new reranker, distillation maps) keep their fresh "
      "initialisation; empty = none");
    v("init_logit_scale", init_logit_scale, "initial logit scale (CLIP: 1/0.07)");
    v("max_logit_scale", max_logit_scale, "the learnable logit scale is capped at this value");
    v.section("image", image, "image tower");
    v.section("text", text, "text tower");
    v.section("chinese_clip", chinese_clip,
              "pretrained Chinese-CLIP towers (instead of image/text)");
    v("distill_dim", distill_dim,
      "a student's linear maps (one per tower) into its teacher's embedding space, for feature "
      "and interactive distillation; train sets it from the teacher cache when the widths "
      "differ; 0 = none");
    v.section("reranker", reranker, "learned cross-attention reranker (stage 2)");
  }
  void check() const {
    config_require(embed_dim > 0, "model.embed_dim", "must be positive");
    reranker.check();
    config_require(distill_dim >= 0, "model.distill_dim", "must be 0 or positive");
    config_require(init_logit_scale > 0, "model.init_logit_scale", "must be positive");
    config_require(max_logit_scale >= init_logit_scale, "model.max_logit_scale",
                   "must be >= model.init_logit_scale");
    image.check();
    text.check();
    chinese_clip.check();
  }
};

// train.image_augment: image augmentation of the training images, in the loader (uint8 pixels,
// before normalisation), in this order: crop, flip, rotation, policy, colour jitter, grayscale.
struct ImageAugmentConfig {
  double crop_scale_min = 0;
  double crop_scale_max = 1;
  double crop_ratio_min = 0.75;
  double crop_ratio_max = 4.0 / 3.0;
  double hflip = 0;
  double rotate_degrees = 0;
  std::vector<int> fill = {123, 117, 104};
  double brightness = 0;
  double contrast = 0;
  double saturation = 0;
  double hue = 0;
  double grayscale = 0;
  AugmentPolicy policy = AugmentPolicy::kNone;
  int randaugment_ops = 2;
  int randaugment_magnitude = 9;
  Resample interpolation = Resample::kBicubic;

  template <class V>
  void visit(V& v) {
    v("crop_scale_min", crop_scale_min,
      "random resized crop: smallest share of the image area; 0 = no crop");
    v("crop_scale_max", crop_scale_max, "random resized crop: largest share of the image area");
    v("crop_ratio_min", crop_ratio_min, "random resized crop: smallest aspect ratio (w / h)");
    v("crop_ratio_max", crop_ratio_max, "random resized crop: largest aspect ratio (w / h)");
    v("hflip", hflip, "probability of a horizontal flip");
    v("rotate_degrees", rotate_degrees, "random rotation by up to this many degrees; 0 = none");
    v("fill", fill, "RGB of pixels that rotation, shear or translation bring in from outside");
    v("brightness", brightness, "colour jitter: brightness factor in [1 - x, 1 + x]; 0 = off");
    v("contrast", contrast, "colour jitter: contrast factor in [1 - x, 1 + x]; 0 = off");
    v("saturation", saturation, "colour jitter: saturation factor in [1 - x, 1 + x]; 0 = off");
    v("hue", hue, "colour jitter: hue shift in [-x, x] turns (x <= 0.5); 0 = off");
    v("grayscale", grayscale, "probability of turning the image grayscale");
    v("policy", policy,
      "none, randaugment (randaugment_ops operations at randaugment_magnitude) or autoaugment "
      "(the AutoAugment ImageNet policy)");
    v("randaugment_ops", randaugment_ops, "RandAugment: operations per image (N)");
    v("randaugment_magnitude", randaugment_magnitude, "RandAugment: magnitude 0..10 (M)");
    v("interpolation", interpolation, "bicubic or bilinear resampling for crops and geometry");
  }
  void check() const;
  // The first field that differs from the defaults ("" when none does).
  std::string first_changed_field() const;
  // Every field as key=value, joined by "; " in visit() order: a readable fingerprint of the
  // augmentations (the teacher cache's view recipe).
  std::string fields_text() const;
};

// train.text_augment: query-text augmentation, in the loader before tokenization (variants, then
// synonym replacement, deletion and swap on jieba's words).
struct TextAugmentConfig {
  double variants = 0;
  std::string variants_file;
  double synonym = 0;
  std::string synonyms_file;
  double deletion = 0;
  int max_deleted = 1;
  double swap = 0;
  std::string protected_file;

  template <class V>
  void visit(V& v) {
    v("variants", variants,
      "probability of replacing a query by one of its variants (back-translations, paraphrases)");
    v("variants_file", variants_file,
      "JSON lines {\"text_id\", \"variants\": [...]}; empty = <data.root>/train_texts.aug.jsonl");
    v("synonym", synonym, "probability of replacing one word by a synonym from synonyms_file");
    v("synonyms_file", synonyms_file, "synonym groups, one per line, words separated by spaces");
    v("deletion", deletion, "probability of deleting 1..max_deleted words (never the last one)");
    v("max_deleted", max_deleted, "most words one deletion removes");
    v("swap", swap, "probability of swapping two words' places");
    v("protected_file", protected_file,
      "words never deleted or replaced (brands, colours), one per line; empty = none");
  }
  void check() const;
  bool enabled() const { return variants > 0 || synonym > 0 || deletion > 0 || swap > 0; }
};

struct TrainConfig {
  int batch_size = 256;
  int epochs = 10;
  double lr = 1e-3;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-6;
  int warmup_steps = 100;
  double warmup_fraction = 0.0;
  double min_lr_ratio = 0.0;
  double grad_clip = 1.0;
  double max_minutes = 0.0;
  double checkpoint_every_minutes = 0.0;
  int patience = 0;
  int eval_every = 1;
  int log_every = 10;
  int max_shift = 0;
  double image_cache_gib = 4.0;
  LossMode loss_mode = LossMode::kLocal;
  double infonce_weight = 1.0;
  double triplet_weight = 0.0;
  double triplet_margin = 0.2;
  int triplet_start_step = 0;
  double bucket_mb = 25.0;
  int check_every = 100;
  FrozenTower freeze = FrozenTower::kNone;
  bool amp = false;
  int micro_batch = 0;
  double ema_decay = 0.0;
  AugmentRecipe augment = AugmentRecipe::kCustom;
  ImageAugmentConfig image_augment;
  TextAugmentConfig text_augment;
  double mixgen = 0;
  double mixgen_lambda = 0.5;
  int loader_threads = 1;
  int mine_every = 0;
  int mine_skip = 3;
  int mine_depth = 50;
  double mine_max_ratio = 0.95;
  double mine_share = 0.5;
  double rerank_weight = 0.0;
  int profile_steps = 0;

  template <class V>
  void visit(V& v) {
    v("batch_size", batch_size,
      "query-image pairs per optimizer step, over all processes (the global batch)");
    v("micro_batch", micro_batch,
      "GradCache: rows per forward pass on each process; the global batch's exact contrastive "
      "gradient with the activation memory of one micro-batch (each row is encoded twice); "
      "0 = the whole local batch at once");
    v("epochs", epochs, "passes over the training pairs");
    v("lr", lr, "peak learning rate (AdamW)");
    v("weight_decay", weight_decay,
      "AdamW decoupled weight decay; not applied to biases, norms, position tables, logit scale");
    v("beta1", beta1, "AdamW beta1");
    v("beta2", beta2, "AdamW beta2");
    v("eps", eps, "AdamW epsilon");
    v("warmup_steps", warmup_steps, "linear warm-up steps before cosine decay");
    v("warmup_fraction", warmup_fraction,
      "warm-up as a share of the schedule (the fitted one under train.max_minutes), in place of "
      "warmup_steps; 0 = warmup_steps, capped at 10% of the schedule under a time budget");
    v("min_lr_ratio", min_lr_ratio, "cosine decays to lr * min_lr_ratio at the last step");
    v("grad_clip", grad_clip, "clip the global gradient norm to this; 0 = no clipping");
    v("max_minutes", max_minutes,
      "wall-clock budget for training; the schedule is fitted to it; 0 = none");
    v("checkpoint_every_minutes", checkpoint_every_minutes,
      "also save checkpoints/last.pt inside an epoch once this many minutes have passed since "
      "the last save, so a lost node or a preempted job loses at most that much work; 0 = at "
      "epoch ends only");
    v("patience", patience,
      "early stopping: stop after this many evaluations without a better valid MeanRecall; "
      "0 = never");
    v("eval_every", eval_every, "evaluate on valid (and checkpoint the best) every N epochs");
    v("log_every", log_every, "append a metrics line every N steps");
    v("max_shift", max_shift, "augmentation: random translation of up to N pixels; 0 = none");
    v("augment", augment,
      "image augmentation recipe: custom (train.image_augment as set; all off by default) or "
      "chinese_clip (Chinese-CLIP's --use-augment transform: random resized crop of scale 0.9-1, "
      "bicubic, horizontal flip 0.5, AutoAugment ImageNet policy)");
    v.section("image_augment", image_augment, "image augmentation with train.augment: custom");
    v.section("text_augment", text_augment, "query-text augmentation");
    v("mixgen", mixgen,
      "MixGen: this share of each global batch (at most 0.5) becomes new pairs, each an image "
      "mix and the concatenated texts of two pairs; 0 = off");
    v("mixgen_lambda", mixgen_lambda, "MixGen: weight of the first image in a mix");
    v("loader_threads", loader_threads,
      "threads that augment and resize a batch's images while the step runs (each image's "
      "result does not depend on the count); 1 = the prefetch thread alone");
    v("mine_every", mine_every,
      "hard-negative mining: every N epochs (from epoch N on; from the start when model.init "
      "gives trained weights) the current model encodes the training set and each query's "
      "nearest non-positive images are mined; 0 = off");
    v("mine_skip", mine_skip, "mining: skip the first N search results of a query");
    v("mine_depth", mine_depth, "mining: take candidates ranked mine_skip .. mine_depth - 1");
    v("mine_max_ratio", mine_max_ratio,
      "mining: drop candidates scoring above this share of the query's best positive (likely "
      "unlabelled positives)");
    v("mine_share", mine_share,
      "mining: share of each global batch filled with pairs whose images are mined negatives of "
      "other queries in the batch");
    v("image_cache_gib", image_cache_gib,
      "hold the training images in memory when their pixels take at most this many GiB, else "
      "read them from the shards at every step");
    v("loss_mode", loss_mode,
      "with several ranks: local (each rank's rows against the gathered global batch, memory "
      "O(bB)) or full (every rank computes the whole B x B loss, memory O(B^2)); same gradients");
    v("infonce_weight", infonce_weight, "weight of the symmetric InfoNCE loss; 0 = off");
    v("triplet_weight", triplet_weight,
      "weight of the max-violation triplet loss on the hardest negatives of the global batch "
      "(VSE++); 0 = off");
    v("triplet_margin", triplet_margin, "margin of the triplet loss (cosine similarity)");
    v("rerank_weight", rerank_weight,
      "weight of the learned reranker's matching loss (needs model.reranker.layers > 0): binary "
      "cross-entropy on each query's positive and its hardest non-relevant image of the global "
      "batch, and each image's hardest non-relevant query; 0 = off");
    v("triplet_start_step", triplet_start_step,
      "add the triplet loss from this step on (hardest-negative training stalls when it starts "
      "too early)");
    v("bucket_mb", bucket_mb,
      "with several ranks: gradients are summed in flat buckets of about this many MB");
    v("check_every", check_every,
      "with several ranks: verify every N steps that all ranks hold identical weights; 0 = never");
    v("profile_steps", profile_steps,
      "profile N training steps per operator (LibTorch's autograd profiler; steps 3 to N + 2 of "
      "the process, after two warm-up steps) and write run.dir/profile.md and profile.json on "
      "the main rank; 0 = off");
    v("freeze", freeze,
      "none, image, text or both: keep that tower's weights fixed (image = locked-image "
      "tuning; both = train only the reranker and the logit scale); a frozen tower also stays "
      "in evaluation mode");
    v("amp", amp,
      "CUDA only: mixed precision, the towers' forward and backward under autocast in bfloat16 "
      "(the loss in float32; bfloat16 needs no loss scaling)");
    v("ema_decay", ema_decay,
      "keep an exponential moving average of the weights with this decay (warmed up as "
      "min(decay, (1 + t) / (10 + t)) after t updates), evaluated beside the raw weights; best.pt "
      "keeps whichever scores higher; 0 = off");
  }
  void check() const;
};

struct EvalConfig {
  std::string index = "Flat";
  std::string search_params;
  int batch_size = 512;
  int top_k = 10;

  template <class V>
  void visit(V& v) {
    v("index", index, "FAISS index-factory string (inner product), e.g. Flat, HNSW32, IVF256,Flat");
    v("search_params", search_params,
      "FAISS search parameters of eval.index, name=value joined by commas (e.g. nprobe=16, "
      "efSearch=128); empty = the index's defaults");
    v("batch_size", batch_size, "images or queries per encoding batch");
    v("top_k", top_k, "predictions per query (MUGE scoring needs 10)");
  }
  void check() const {
    config_require(!index.empty(), "eval.index", "must name a FAISS index-factory string");
    config_require(batch_size >= 1, "eval.batch_size", "must be positive");
    config_require(top_k >= 1, "eval.top_k", "must be positive");
  }
};

struct DistConfig {
  double timeout_s = 600;

  template <class V>
  void visit(V& v) {
    v("timeout_s", timeout_s,
      "with several ranks: a collective still waiting after this many seconds (a lost node, a "
      "stopped rank) ends the job with exit status 75 and a message naming it; must exceed the "
      "longest wait of one rank for another (rank 0's checkpoint writes and evaluation search)");
  }
  void check() const { config_require(timeout_s > 0, "dist.timeout_s", "must be positive"); }
};

// distill: knowledge distillation into this run's model (the student) from a teacher's embeddings
// of every training image and query, stored by `shopclip distill cache` (core/train/distill_loss.h
// has the losses).
struct DistillConfig {
  std::string teacher;
  // An imported Chinese-CLIP teacher: its JSON configs and vocab.txt (distill.teacher names its
  // converted weights); all three or none.
  std::string teacher_vision_config, teacher_text_config, teacher_vocab;
  int teacher_context_length = 52;
  std::string teacher_cache;
  double feature_weight = 0;
  double contrastive_weight = 0;
  double relational_weight = 0;
  double teacher_temperature = 0;
  double student_temperature = 0;
  bool teacher_negatives = false;
  bool online = false;
  int views = 0;

  // Whether any distillation term or the teacher's negatives are on.
  bool active() const {
    return feature_weight > 0 || contrastive_weight > 0 || relational_weight > 0 ||
           teacher_negatives;
  }
  // Whether training reads distill.teacher_cache: for the terms' rows unless the teacher runs
  // online, and for the teacher's negatives.
  bool uses_cache() const { return active() && (!online || teacher_negatives); }
  // Whether a term compares student and teacher embeddings directly (model.distill_dim).
  bool compares_embeddings() const { return feature_weight > 0 || contrastive_weight > 0; }

  template <class V>
  void visit(V& v) {
    v("teacher", teacher,
      "the teacher: a run directory (its checkpoints/best.pt) or a checkpoint file, or an "
      "imported Chinese-CLIP model's converted weights (with distill.teacher_vision_config, "
      "teacher_text_config and teacher_vocab); `distill cache` encodes with it, and train refuses "
      "a cache another teacher made");
    v("teacher_vision_config", teacher_vision_config,
      "an imported Chinese-CLIP teacher: its vision JSON config");
    v("teacher_text_config", teacher_text_config, "... its text JSON config");
    v("teacher_vocab", teacher_vocab, "... its vocab.txt");
    v("teacher_context_length", teacher_context_length,
      "... tokens per query with [CLS] and [SEP] (capped at its positions)");
    v("teacher_cache", teacher_cache,
      "folder of the teacher's stored embeddings (written by `shopclip distill cache`)");
    v("feature_weight", feature_weight,
      "feature distillation: squared distance between the student's embeddings (mapped into the "
      "teacher's space) and the teacher's; 0 = off");
    v("contrastive_weight", contrastive_weight,
      "interactive contrastive distillation: InfoNCE of student images against the teacher's "
      "texts and student texts against the teacher's images; 0 = off");
    v("relational_weight", relational_weight,
      "relational distillation: KL divergence from the teacher's to the student's text->image "
      "and image->text similarity distributions over the global batch; 0 = off");
    v("teacher_temperature", teacher_temperature,
      "temperature of the teacher's distributions (relational term); 0 = 1 / the teacher's "
      "learned logit scale, from the cache");
    v("student_temperature", student_temperature,
      "temperature of the student's distributions (relational term); 0 = the student's learnable "
      "logit scale");
    v("teacher_negatives", teacher_negatives,
      "hard negatives from the teacher: for each training query the images the teacher ranks "
      "train.mine_skip .. mine_depth - 1 (by the cache's embeddings; positives and candidates "
      "above train.mine_max_ratio of the best positive dropped) fill train.mine_share of each "
      "batch, and the relational term scores them with the teacher's probabilities; not with "
      "train.mine_every");
    v("online", online,
      "run the teacher (distill.teacher: a shopclip run or checkpoint, or an imported "
      "Chinese-CLIP model) in every step without gradients on the batch the student sees (its "
      "augmented images, resized to the teacher's resolution; the queries in the teacher's "
      "vocabulary) instead of reading distill.teacher_cache, which only "
      "distill.teacher_negatives then needs");
    v("views", views,
      "augmented views per training image in the teacher cache (MobileCLIP's dataset "
      "reinforcement): `distill cache` encodes V views of each image, drawn with this config's "
      "image augmentations and run.seed; training shows each row one of them and reads the "
      "teacher's embedding of exactly that view (not with distill.online or train.mixgen); 0 = "
      "the stored images, unaugmented");
  }
  void check() const {
    config_require(feature_weight >= 0, "distill.feature_weight", "must be >= 0");
    config_require(contrastive_weight >= 0, "distill.contrastive_weight", "must be >= 0");
    config_require(relational_weight >= 0, "distill.relational_weight", "must be >= 0");
    config_require(teacher_temperature >= 0, "distill.teacher_temperature", "must be >= 0");
    config_require(student_temperature >= 0, "distill.student_temperature", "must be >= 0");
    config_require(!uses_cache() || !teacher_cache.empty(), "distill.teacher_cache",
                   "must name the teacher's cache when a distill.*_weight is positive (without "
                   "distill.online) or distill.teacher_negatives is on");
    config_require(!online || !teacher.empty(), "distill.online",
                   "needs distill.teacher (a shopclip run directory or checkpoint)");
    config_require(views >= 0 && views <= 64, "distill.views", "must be within [0, 64]");
    const int chinese_clip_files = int(!teacher_vision_config.empty()) +
                                   int(!teacher_text_config.empty()) + int(!teacher_vocab.empty());
    config_require(chinese_clip_files == 0 || chinese_clip_files == 3,
                   chinese_clip_files > 0 && teacher_vision_config.empty()
                       ? "distill.teacher_vision_config"
                       : (teacher_text_config.empty() ? "distill.teacher_text_config"
                                                      : "distill.teacher_vocab"),
                   "an imported Chinese-CLIP teacher needs distill.teacher_vision_config, "
                   "teacher_text_config and teacher_vocab together (distill.teacher names its "
                   "converted weights)");
    config_require(teacher_context_length >= 2, "distill.teacher_context_length", "must be >= 2");
  }
};

struct Config {
  RunConfig run;
  DataConfig data;
  PrepConfig prep;
  ModelConfig model;
  TrainConfig train;
  EvalConfig eval;
  DistConfig dist;
  DistillConfig distill;

  template <class V>
  void visit(V& v) {
    v.section("run", run, "run directory, seed, threads");
    v.section("data", data, "where the MUGE-format files are");
    v.section("prep", prep, "image preprocessing into HDF5 shards");
    v.section("model", model, "dual-encoder architecture");
    v.section("train", train, "optimisation");
    v.section("eval", eval, "retrieval evaluation");
    v.section("dist", dist, "several processes: the collective watchdog");
    v.section("distill", distill, "knowledge distillation from a teacher's stored embeddings");
  }

  // Parses YAML text. `source` names it in error messages (a file path or "<checkpoint>").
  // Overrides are "key.path=value" strings applied before parsing; a value is read as YAML, so
  // "model.image.widths=[16,32]" works. Unknown keys, wrong types and invalid values throw
  // ConfigError naming the key path.
  static Config from_yaml(const std::string& yaml_text, const std::string& source,
                          const std::vector<std::string>& overrides = {});
  // Reads a YAML file (an empty path gives the defaults) and applies overrides.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});

  // The resolved configuration as YAML, each field preceded by its description.
  std::string to_yaml() const;
  // Every section's check() and the rules that span sections; throws ConfigError naming the key.
  void validate() const;

  // Derived paths.
  std::string prep_dir() const;  // data.prep_dir or its default
  // <prep_dir>/<split>; without data.prep_dir the training split lives under
  // <root>/prep-r<prep.resolution> when that is set.
  std::string prep_split_dir(const std::string& split) const;
  // The side prep stores a split's images at: prep.resolution for the training split when set,
  // else model.image.resolution.
  int prep_resolution(const std::string& split) const;
};

// One line per field: "key.path  (type, default value)  description". For `shopclip config
// --describe` and the README.
std::string describe_config();

}  // namespace shopclip
