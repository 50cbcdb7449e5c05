#include "data/synth.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include <fmt/format.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include "data/base64.h"
#include "data/error.h"
#include "data/files.h"
#include "data/image.h"
#include "data/muge.h"
#include "data/parallel.h"
#include "data/rng.h"

namespace shopclip::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- the attribute catalogue -------------------------------------------------------------------

struct NamedColor {
  std::array<std::uint8_t, 3> rgb;
  std::vector<std::string> names;  // first = canonical; all are used in queries
  std::string short_name;          // form used inside two-colour phrases ("红白条纹")
};

const std::vector<NamedColor>& colors() {
  static const std::vector<NamedColor> table = {
      {{200, 30, 40}, {"红色", "大红色", "红"}, "红"},
      {{240, 130, 30}, {"橙色", "橘色"}, "橙"},
      {{240, 205, 40}, {"黄色", "明黄色"}, "黄"},
      {{40, 155, 70}, {"绿色", "草绿色"}, "绿"},
      {{30, 170, 180}, {"青色", "湖蓝色"}, "青"},
      {{40, 85, 205}, {"蓝色", "宝蓝色"}, "蓝"},
      {{25, 35, 85}, {"藏青色", "藏蓝色", "深蓝色"}, "藏青"},
      {{125, 55, 170}, {"紫色", "紫"}, "紫"},
      {{245, 155, 190}, {"粉色", "粉红色"}, "粉"},
      {{246, 246, 246}, {"白色", "纯白色"}, "白"},
      {{28, 28, 30}, {"黑色", "纯黑色"}, "黑"},
      {{135, 135, 140}, {"灰色", "浅灰色"}, "灰"},
      {{115, 70, 35}, {"棕色", "咖啡色"}, "棕"},
      {{225, 205, 160}, {"米色", "杏色"}, "米"},
      {{115, 20, 40}, {"酒红色", "枣红色"}, "酒红"},
      {{85, 100, 50}, {"军绿色", "橄榄绿"}, "军绿"},
  };
  return table;
}

// Index 0 is solid; its names are used only sometimes (an unnamed pattern means solid).
const std::vector<std::vector<std::string>>& pattern_names() {
  static const std::vector<std::vector<std::string>> table = {
      {"纯色", "素色"},         {"条纹", "横条纹", "横纹"}, {"竖条纹", "竖纹", "竖条"},
      {"格子", "格纹", "方格"}, {"波点", "圆点", "点点"},   {"拼色", "撞色拼接", "拼接"},
  };
  return table;
}

// Index 0 is "no print" and has no name.
const std::vector<std::vector<std::string>>& print_names() {
  static const std::vector<std::vector<std::string>> table = {
      {},       {"星星", "五角星"}, {"爱心", "心形"},   {"月亮", "弯月"}, {"闪电"},
      {"十字"}, {"圆环"},           {"三角形", "三角"}, {"菱形"},
  };
  return table;
}

const std::vector<std::vector<std::string>>& category_names() {
  static const std::vector<std::vector<std::string>> table = {
      {"T恤", "短袖", "体恤", "短袖上衣"},
      {"裤子", "长裤", "休闲裤", "直筒裤"},
      {"卫衣", "套头衫", "毛衣", "针织衫"},
      {"连衣裙", "裙子", "长裙"},
      {"外套", "大衣", "夹克"},
      {"凉鞋", "凉拖", "拖鞋"},
      {"衬衫", "衬衣"},
      {"运动鞋", "板鞋", "休闲鞋", "跑步鞋"},
      {"包", "包包", "手提包", "斜挎包"},
      {"短靴", "靴子", "马丁靴", "切尔西靴"},
  };
  return table;
}

// Words real shop queries carry that say nothing about what the picture shows. None of them
// contains a colour, pattern, print or category word.
const std::vector<std::string>& leading_fillers() {
  static const std::vector<std::string> table = {
      "新款", "2024新款", "韩版",  "秋冬", "夏季",     "春秋款", "女",   "男",   "男士", "女士",
      "学生", "百搭",     "ins风", "潮牌", "宽松",     "显瘦",   "简约", "时尚", "网红", "高级感",
      "复古", "日系",     "休闲",  "正品", "小众设计", "大码",   "情侣", "法式", "港风", "洋气"};
  return table;
}

const std::vector<std::string>& trailing_fillers() {
  static const std::vector<std::string> table = {
      "女",   "男",   "潮",   "2024新款", "百搭", "爆款", "正品", "秋季", "ins",  "宽松",
      "外穿", "新款", "女款", "男款",     "潮流", "气质", "舒适", "透气", "修身", "清仓"};
  return table;
}

constexpr int kNumCategories = 10;
constexpr int kItemSide = 28;
constexpr int kItemPixels = kItemSide * kItemSide;

// ---- Fashion-MNIST -----------------------------------------------------------------------------

std::string read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) {
    throw DataError(fmt::format(
        "cannot open '{}': install Debian's dataset-fashion-mnist package (launch/setup.sh)",
        path));
  }
  std::string bytes;
  std::array<char, 1 << 16> buffer;
  int n = 0;
  while ((n = gzread(file, buffer.data(), buffer.size())) > 0)
    bytes.append(buffer.data(), n);
  int error = 0;
  const char* message = gzerror(file, &error);
  const bool failed = n < 0 || (error != Z_OK && error != Z_STREAM_END);
  const std::string reason = failed ? message : "";
  gzclose(file);
  if (failed) throw DataError(fmt::format("'{}': gzip error: {}", path, reason));
  return bytes;
}

std::uint32_t read_big_endian(const std::string& bytes, std::size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + offset;
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

// Items of one Fashion-MNIST part, grouped by label.
struct FashionItems {
  std::string pixels;                                     // n * 784 bytes
  std::array<std::vector<int>, kNumCategories> by_label;  // item indices per label

  const std::uint8_t* item(int index) const {
    return reinterpret_cast<const std::uint8_t*>(pixels.data()) +
           static_cast<std::size_t>(index) * kItemPixels;
  }
};

FashionItems load_fashion_part(const std::string& dir, const std::string& prefix) {
  const std::string images_path = fmt::format("{}/{}-images-idx3-ubyte.gz", dir, prefix);
  const std::string labels_path = fmt::format("{}/{}-labels-idx1-ubyte.gz", dir, prefix);
  std::string images = read_gzip(images_path), labels = read_gzip(labels_path);
  if (images.size() < 16 || read_big_endian(images, 0) != 2051) {
    throw DataError(fmt::format("'{}' is not an IDX image file", images_path));
  }
  if (labels.size() < 8 || read_big_endian(labels, 0) != 2049) {
    throw DataError(fmt::format("'{}' is not an IDX label file", labels_path));
  }
  const std::size_t n = read_big_endian(images, 4);
  if (read_big_endian(images, 8) != kItemSide || read_big_endian(images, 12) != kItemSide ||
      images.size() != 16 + n * kItemPixels || read_big_endian(labels, 4) != n ||
      labels.size() != 8 + n) {
    throw DataError(fmt::format("'{}' / '{}': unexpected sizes", images_path, labels_path));
  }
  FashionItems items;
  items.pixels = images.substr(16);
  for (std::size_t i = 0; i < n; ++i) {
    const int label = static_cast<unsigned char>(labels[8 + i]);
    if (label >= kNumCategories) throw DataError(fmt::format("'{}': label {}", labels_path, label));
    items.by_label[label].push_back(static_cast<int>(i));
  }
  return items;
}

// ---- rendering ---------------------------------------------------------------------------------

double luminance(const std::array<std::uint8_t, 3>& c) {
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
}

bool inside_polygon(double x, double y, const std::vector<std::pair<double, double>>& polygon) {
  bool inside = false;
  for (std::size_t i = 0, j = polygon.size() - 1; i < polygon.size(); j = i++) {
    const auto [xi, yi] = polygon[i];
    const auto [xj, yj] = polygon[j];
    if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

const std::vector<std::pair<double, double>>& star_polygon() {
  static const auto polygon = [] {
    std::vector<std::pair<double, double>> points;
    for (int i = 0; i < 10; ++i) {
      const double radius = i % 2 == 0 ? 1.0 : 0.42;
      const double angle = -M_PI / 2 + i * M_PI / 5;
      points.emplace_back(radius * std::cos(angle), radius * std::sin(angle) + 0.08);
    }
    return points;
  }();
  return polygon;
}

// Whether the point (x, y) of the print's box [-1, 1]^2 (y down) is inside the shape.
bool inside_print(int print, double x, double y) {
  switch (print) {
    case 1:
      return inside_polygon(x, y, star_polygon());
    case 2: {  // heart: (X^2 + Y^2 - 1)^3 - X^2 Y^3 <= 0, Y up
      const double X = x * 1.15, Y = -y * 1.15 + 0.25;
      const double a = X * X + Y * Y - 1;
      return a * a * a - X * X * Y * Y * Y <= 0;
    }
    case 3:  // crescent
      return x * x + y * y <= 0.9 && (x - 0.42) * (x - 0.42) + (y + 0.12) * (y + 0.12) > 0.55;
    case 4: {
      static const std::vector<std::pair<double, double>> bolt = {
          {0.25, -1.0}, {-0.55, 0.15}, {-0.05, 0.15}, {-0.3, 1.0},
          {0.6, -0.2},  {0.1, -0.2},   {0.45, -1.0}};
      return inside_polygon(x, y, bolt);
    }
    case 5:
      return (std::abs(x) < 0.3 && std::abs(y) < 0.95) || (std::abs(y) < 0.3 && std::abs(x) < 0.95);
    case 6: {
      const double r2 = x * x + y * y;
      return r2 >= 0.5 * 0.5 && r2 <= 0.95 * 0.95;
    }
    case 7: {
      static const std::vector<std::pair<double, double>> triangle = {
          {0.0, -0.95}, {0.95, 0.8}, {-0.95, 0.8}};
      return inside_polygon(x, y, triangle);
    }
    case 8:
      return std::abs(x) / 0.72 + std::abs(y) <= 0.97;
    default:
      return false;
  }
}

// Bilinear sample of a 28x28 item in [0, 1], 0 outside.
double sample_item(const std::uint8_t* item, double u, double v) {
  const int u0 = static_cast<int>(std::floor(u)), v0 = static_cast<int>(std::floor(v));
  const double fu = u - u0, fv = v - v0;
  auto at = [&](int x, int y) -> double {
    if (x < 0 || y < 0 || x >= kItemSide || y >= kItemSide) return 0.0;
    return item[y * kItemSide + x] / 255.0;
  };
  return (at(u0, v0) * (1 - fu) + at(u0 + 1, v0) * fu) * (1 - fv) +
         (at(u0, v0 + 1) * (1 - fu) + at(u0 + 1, v0 + 1) * fu) * fv;
}

}  // namespace

// ---- public catalogue ----------------------------------------------------------------------

std::int64_t ProductAttributes::code() const {
  return (((static_cast<std::int64_t>(category) * 16 + color) * 8 + pattern) * 17 + (accent + 1)) *
             16 +
         print;
}

int synth_num_colors() {
  return static_cast<int>(colors().size());
}
int synth_num_patterns() {
  return static_cast<int>(pattern_names().size());
}
int synth_num_prints() {
  return static_cast<int>(print_names().size());
}
std::string synth_category_name(int category) {
  return category_names().at(category).front();
}
const std::vector<std::string>& synth_category_synonyms(int category) {
  return category_names().at(category);
}
std::string synth_color_name(int color) {
  return colors().at(color).names.front();
}
std::string synth_pattern_name(int pattern) {
  return pattern_names().at(pattern).front();
}
std::string synth_print_name(int print) {
  return print == 0 ? "无" : print_names().at(print).front();
}

SynthScale synth_scale(const std::string& name) {
  SynthScale scale;
  scale.name = name;
  if (name == "tiny") {
    scale.train_products = 400;
    scale.train_second_image = 0.5;
    scale.eval_queries = 40;
    scale.max_group = 5;
    scale.image_size = 64;
  } else if (name == "demo") {
    scale.train_products = 16000;
    scale.train_second_image = 0.5;
    scale.eval_queries = 1000;
    scale.image_size = 96;
  } else if (name == "muge") {
    // MUGE train: ~250k pairs over ~129k images; valid and test: ~5k queries over ~30k images.
    scale.train_products = 80000;
    scale.train_second_image = 0.62;
    scale.eval_queries = 5000;
    scale.image_size = 128;
  } else {
    throw std::invalid_argument(
        fmt::format("unknown synth scale '{}': expected tiny, demo or muge", name));
  }
  return scale;
}

Image render_product(const std::uint8_t* item, const ProductAttributes& attributes,
                     const RenderOptions& options) {
  const int size = options.size;
  Rng rng(options.seed);
  const auto& palette = colors();
  const auto main_rgb = palette.at(attributes.color).rgb;
  const auto accent_rgb = attributes.accent >= 0 ? palette.at(attributes.accent).rgb : main_rgb;

  // Background: a light or (for light products) dark studio backdrop with a soft gradient.
  static const std::vector<std::array<std::uint8_t, 3>> backdrops = {
      {248, 248, 248}, {232, 232, 234}, {243, 237, 228}, {229, 236, 244}, {236, 242, 234}};
  std::array<std::uint8_t, 3> backdrop = rng.pick(backdrops);
  if (std::abs(luminance(backdrop) - luminance(main_rgb)) < 45) backdrop = {58, 58, 62};
  const double gradient = rng.uniform(-0.06, 0.06);

  // Placement: the 28x28 item scaled to 70-92% of the frame at a random position, maybe mirrored.
  const double box = size * rng.uniform(0.70, 0.92);
  const double x0 = rng.uniform(0, size - box), y0 = rng.uniform(0, size - box);
  const bool mirror = rng.chance(0.5);

  // Normalise the item's brightness so the shading range does not depend on the photo.
  double peak = 1.0;
  {
    std::vector<std::uint8_t> sorted(item, item + kItemPixels);
    std::nth_element(sorted.begin(), sorted.begin() + kItemPixels * 97 / 100, sorted.end());
    peak = std::max(40, static_cast<int>(sorted[kItemPixels * 97 / 100])) / 255.0;
  }
  // Print centre at the item's intensity centroid (in item units, 0..1).
  double cx = 0.5, cy = 0.5;
  {
    double sum = 0, sx = 0, sy = 0;
    for (int y = 0; y < kItemSide; ++y) {
      for (int x = 0; x < kItemSide; ++x) {
        const double w = item[y * kItemSide + x];
        sum += w, sx += w * (x + 0.5), sy += w * (y + 0.5);
      }
    }
    if (sum > 0) cx = sx / sum / kItemSide, cy = sy / sum / kItemSide;
    if (mirror) cx = 1.0 - cx;
  }
  const double print_half = rng.uniform(0.12, 0.16);
  const std::array<std::uint8_t, 3> print_rgb = luminance(main_rgb) > 128
                                                    ? std::array<std::uint8_t, 3>{25, 25, 25}
                                                    : std::array<std::uint8_t, 3>{250, 250, 250};

  // Pattern geometry in item units: about 6 stripes / checks / dot rows across the item.
  const double period = 1.0 / rng.uniform(5.0, 7.0);
  const double phase_u = rng.uniform(), phase_v = rng.uniform();
  const double block_split = rng.uniform(0.45, 0.55);
  // Lighting: exposure and a slight colour cast, so colour names must survive white balance
  // (white drifts towards cream or grey, navy towards black) as in real product photos.
  const double exposure = rng.uniform(0.88, 1.06);
  double cast[3];
  for (double& channel : cast)
    channel = exposure * rng.uniform(0.94, 1.06);

  auto accent_at = [&](double pu, double pv) -> double {  // share of accent colour at a point
    auto frac = [](double t) { return t - std::floor(t); };
    switch (attributes.pattern) {
      case 1:
        return frac(pv / period + phase_v) < 0.4 ? 1.0 : 0.0;
      case 2:
        return frac(pu / period + phase_u) < 0.4 ? 1.0 : 0.0;
      case 3: {
        const bool a = frac(pu / period + phase_u) < 0.28, b = frac(pv / period + phase_v) < 0.28;
        return a && b ? 1.0 : (a || b ? 0.7 : 0.0);
      }
      case 4: {
        const double row = std::floor(pv / period + phase_v);
        const double shift = std::fmod(row, 2.0) == 0 ? 0.0 : 0.5;
        const double du = frac(pu / period + phase_u + shift) - 0.5;
        const double dv = frac(pv / period + phase_v) - 0.5;
        return du * du + dv * dv < 0.26 * 0.26 ? 1.0 : 0.0;
      }
      case 5:
        return pv > block_split ? 1.0 : 0.0;
      default:
        return 0.0;
    }
  };

  Image image;
  image.width = image.height = size;
  image.rgb.resize(static_cast<std::size_t>(size) * size * 3);
  constexpr int kSuper = 2;  // 2x2 supersampling keeps pattern and print edges smooth
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      double acc[3] = {0, 0, 0};
      for (int sy = 0; sy < kSuper; ++sy) {
        for (int sx = 0; sx < kSuper; ++sx) {
          const double px = x + (sx + 0.5) / kSuper, py = y + (sy + 0.5) / kSuper;
          double pu = (px - x0) / box, pv = (py - y0) / box;  // item units
          const double su = mirror ? 1.0 - pu : pu;
          const double intensity = sample_item(item, su * kItemSide - 0.5, pv * kItemSide - 0.5);
          const double alpha = std::clamp((intensity - 0.03) / 0.12, 0.0, 1.0);
          const double shade = 0.68 + 0.32 * std::min(1.0, intensity / peak);
          const double t = accent_at(pu, pv);
          double item_rgb[3];
          for (int c = 0; c < 3; ++c) {
            item_rgb[c] = ((1 - t) * main_rgb[c] + t * accent_rgb[c]) * shade;
          }
          if (attributes.print > 0) {
            const double qx = (pu - cx) / print_half, qy = (pv - cy) / print_half;
            if (std::abs(qx) <= 1 && std::abs(qy) <= 1 && inside_print(attributes.print, qx, qy)) {
              for (int c = 0; c < 3; ++c)
                item_rgb[c] = print_rgb[c];
            }
          }
          const double light = 1.0 + gradient * (py / size - 0.5) * 2;
          for (int c = 0; c < 3; ++c) {
            acc[c] += alpha * item_rgb[c] + (1 - alpha) * backdrop[c] * light;
          }
        }
      }
      std::uint8_t* out = &image.rgb[(static_cast<std::size_t>(y) * size + x) * 3];
      for (int c = 0; c < 3; ++c) {
        out[c] = static_cast<std::uint8_t>(
            std::clamp(std::lround(cast[c] * acc[c] / (kSuper * kSuper)), 0L, 255L));
      }
    }
  }
  return image;
}

std::string synth_query_text(const ProductAttributes& a, std::uint64_t seed) {
  Rng rng(seed);
  const auto& palette = colors();
  // Colour and pattern phrase.
  std::string look;
  const auto& main = palette.at(a.color);
  if (a.pattern == 0) {
    look = rng.pick(main.names);
    if (rng.chance(0.3))
      look = rng.chance(0.5) ? rng.pick(pattern_names()[0]) + look
                             : look + rng.pick(pattern_names()[0]);
  } else {
    const auto& accent = palette.at(a.accent);
    const std::string& pattern = rng.pick(pattern_names().at(a.pattern));
    const double form = rng.uniform();
    if (form < 0.5) {
      look = main.short_name + accent.short_name + pattern;  // 红白条纹
    } else if (form < 0.75 && a.pattern != 5) {
      look = main.short_name + "底" + rng.pick(accent.names) + pattern;  // 白底黑色波点
    } else {
      look = rng.pick(main.names) + rng.pick(accent.names) + pattern;  // 红色白色条纹
    }
  }
  std::string print;
  if (a.print > 0) {
    const std::string& shape = rng.pick(print_names().at(a.print));
    const double form = rng.uniform();
    print = form < 0.45 ? shape + "印花" : (form < 0.8 ? shape + "图案" : "印" + shape);
  }
  const std::string& category = rng.pick(category_names().at(a.category));

  std::vector<std::string> parts;
  const int leading = rng.between(0, 2), trailing = rng.between(0, 1);
  for (int i = 0; i < leading; ++i)
    parts.push_back(rng.pick(leading_fillers()));
  const double order = rng.uniform();
  if (order < 0.6) {  // 红白条纹爱心印花T恤
    parts.push_back(look);
    if (!print.empty()) parts.push_back(print);
    parts.push_back(category);
  } else if (order < 0.85) {  // 红白条纹T恤 爱心印花
    parts.push_back(look);
    parts.push_back(category);
    if (!print.empty()) parts.push_back(print);
  } else {  // T恤 红白条纹 爱心印花
    parts.push_back(category);
    parts.push_back(look);
    if (!print.empty()) parts.push_back(print);
  }
  for (int i = 0; i < trailing; ++i)
    parts.push_back(rng.pick(trailing_fillers()));
  // Drop adjacent repeats (a filler drawn twice).
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  std::string text;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0 && rng.chance(0.25)) text += ' ';
    text += parts[i];
  }
  return text;
}

namespace {

json attributes_json(std::int64_t id, const char* id_key, const ProductAttributes& a) {
  return json{{id_key, id},           {"category", a.category}, {"color", a.color},
              {"pattern", a.pattern}, {"accent", a.accent},     {"print", a.print}};
}

ProductAttributes random_attributes(Rng& rng) {
  ProductAttributes a;
  a.category = rng.between(0, kNumCategories - 1);
  a.color = rng.between(0, synth_num_colors() - 1);
  // Uniform over combinations: a patterned product picks one of 5 patterns x 15 accents.
  const int choices = 1 + (synth_num_patterns() - 1) * (synth_num_colors() - 1);
  const int choice = rng.between(0, choices - 1);
  if (choice == 0) {
    a.pattern = 0, a.accent = -1;
  } else {
    a.pattern = 1 + (choice - 1) / (synth_num_colors() - 1);
    a.accent = (choice - 1) % (synth_num_colors() - 1);
    if (a.accent >= a.color) ++a.accent;  // accent differs from the main colour
  }
  a.print = rng.between(0, synth_num_prints() - 1);
  return a;
}

// A combination that differs from `base` in exactly one visible way: another category, main
// colour, accent colour or print, another pattern, or main and accent colours swapped.
ProductAttributes sibling_of(const ProductAttributes& base, Rng& rng) {
  ProductAttributes a = base;
  const int colors_count = synth_num_colors();
  auto other_color = [&](int avoid_a, int avoid_b) {
    int c = rng.between(0, colors_count - 1);
    while (c == avoid_a || c == avoid_b)
      c = rng.between(0, colors_count - 1);
    return c;
  };
  switch (rng.between(0, 5)) {
    case 0:
      a.category = (base.category + rng.between(1, kNumCategories - 1)) % kNumCategories;
      break;
    case 1:
      a.color = other_color(base.color, base.accent);
      break;
    case 2:
      if (base.pattern == 0) a.pattern = rng.between(1, synth_num_patterns() - 1);
      a.accent = other_color(base.color, base.accent);
      break;
    case 3:
      a.pattern = (base.pattern + rng.between(1, synth_num_patterns() - 1)) % synth_num_patterns();
      if (a.pattern == 0) a.accent = -1;
      if (base.pattern == 0) a.accent = other_color(base.color, -1);
      break;
    case 4:
      a.print = (base.print + rng.between(1, synth_num_prints() - 1)) % synth_num_prints();
      break;
    default:
      if (base.pattern == 0) return sibling_of(base, rng);  // nothing to swap on a solid
      std::swap(a.color, a.accent);
      break;
  }
  return a;
}

// Draws distinct attribute combinations in families: a random base followed by up to
// max_family - 1 siblings (sibling_of), so pools hold near misses that differ from a query's
// answer in one attribute only, as real catalogues do (the red striped T-shirt beside the red
// plain one and the blue striped one).
class CombinationSampler {
 public:
  CombinationSampler(Rng& rng, int max_family) : rng_(rng), max_family_(max_family) {}

  ProductAttributes next() {
    if (left_in_family_ > 0) {
      --left_in_family_;
      for (int attempt = 0; attempt < 50; ++attempt) {
        const ProductAttributes a = sibling_of(base_, rng_);
        if (used_.insert(a.code()).second) return a;
      }
    }
    base_ = random_attributes(rng_);
    while (!used_.insert(base_.code()).second)
      base_ = random_attributes(rng_);
    left_in_family_ = rng_.between(1, max_family_) - 1;
    return base_;
  }

 private:
  Rng& rng_;
  int max_family_;
  ProductAttributes base_;
  int left_in_family_ = 0;
  std::unordered_set<std::int64_t> used_;
};

// One image to render: its id, attributes and Fashion-MNIST item.
struct PlannedImage {
  std::int64_t id = 0;
  ProductAttributes attributes;
  int item = 0;
  std::uint64_t seed = 0;
};

// Renders and encodes images in parallel, streaming "id\tbase64\n" lines to the file in order.
void write_images(const std::string& path, const std::vector<PlannedImage>& images,
                  const FashionItems& items, int image_size, int threads,
                  const std::function<void(const std::string&)>& progress) {
  AtomicFileWriter out(path);
  constexpr std::size_t kBlock = 1024;
  std::vector<std::string> lines(kBlock);
  for (std::size_t begin = 0; begin < images.size(); begin += kBlock) {
    const std::size_t end = std::min(images.size(), begin + kBlock);
    parallel_for(begin, end, threads, [&](std::size_t i) {
      const PlannedImage& plan = images[i];
      Rng quality_rng(plan.seed ^ 0x5bd1e995ULL);
      const Image image =
          render_product(items.item(plan.item), plan.attributes, {image_size, plan.seed});
      const std::string jpeg = encode_jpeg(image, quality_rng.between(82, 95));
      lines[i - begin] = std::to_string(plan.id) + '\t' + encode_base64(jpeg) + '\n';
    });
    for (std::size_t i = begin; i < end; ++i)
      out.write(lines[i - begin]);
    if (progress && (end == images.size() || (end / kBlock) % 16 == 0)) {
      progress(
          fmt::format("{}: {}/{} images", fs::path(path).filename().string(), end, images.size()));
    }
  }
  out.commit();
}

void write_jsonl(const std::string& path, const std::vector<json>& rows) {
  std::string text;
  for (const auto& row : rows)
    text += row.dump(-1, ' ', false) + "\n";
  write_file_atomic(path, text);
}

struct SplitPlan {
  std::vector<PlannedImage> images;
  std::vector<Query> queries;
  std::vector<ProductAttributes> query_attributes;  // parallel to queries
};

// Ids: distinct ranges per split, so an id never means two images of the dataset.
constexpr std::int64_t kImageIdBase[3] = {1000000, 3000000, 5000000};
constexpr std::int64_t kQueryIdBase[3] = {10000000, 20000000, 30000000};

SplitPlan plan_train(const SynthScale& scale, const FashionItems& items, std::uint64_t seed) {
  SplitPlan plan;
  Rng rng = Rng::derive(seed, 101);
  CombinationSampler combinations(rng, scale.max_family);
  std::int64_t next_image = kImageIdBase[0], next_query = kQueryIdBase[0];
  for (int product = 0; product < scale.train_products; ++product) {
    const ProductAttributes a = combinations.next();
    const int copies = rng.chance(scale.train_second_image) ? 2 : 1;
    std::vector<std::int64_t> ids;
    for (int c = 0; c < copies; ++c) {
      const auto& candidates = items.by_label[a.category];
      plan.images.push_back({next_image, a, candidates[rng.below(candidates.size())], rng.next()});
      ids.push_back(next_image++);
    }
    const int queries = rng.between(1, scale.train_max_queries);
    std::unordered_set<std::string> texts;
    for (int q = 0, attempts = 0; q < queries && attempts < 20; ++attempts) {
      std::string text = synth_query_text(a, rng.next());
      if (!texts.insert(text).second) continue;  // a product's queries differ from each other
      plan.queries.push_back({next_query++, std::move(text), ids, 0});
      plan.query_attributes.push_back(a);
      ++q;
    }
  }
  return plan;
}

SplitPlan plan_eval(const SynthScale& scale, const FashionItems& items, std::uint64_t seed,
                    int split_index) {
  SplitPlan plan;
  Rng rng = Rng::derive(seed, 101 + split_index);
  CombinationSampler combinations(rng, scale.max_family);
  std::int64_t next_image = kImageIdBase[split_index], next_query = kQueryIdBase[split_index];
  for (int q = 0; q < scale.eval_queries; ++q) {
    const ProductAttributes a = combinations.next();
    const int group = rng.between(1, scale.max_group);
    std::vector<std::int64_t> ids;
    for (int c = 0; c < group; ++c) {
      const auto& candidates = items.by_label[a.category];
      plan.images.push_back({next_image, a, candidates[rng.below(candidates.size())], rng.next()});
      ids.push_back(next_image++);
    }
    plan.queries.push_back({next_query++, synth_query_text(a, rng.next()), ids, 0});
    plan.query_attributes.push_back(a);
  }
  // The pool lists images in a random order, so position says nothing about the query.
  rng.shuffle(plan.images);
  return plan;
}

}  // namespace

std::vector<SynthSplitSummary> make_synthetic_dataset(
    const SynthOptions& options, const std::function<void(const std::string&)>& progress) {
  if (options.out_dir.empty()) throw std::invalid_argument("synth: no output folder given");
  SynthScale scale = synth_scale(options.scale);
  if (options.image_size > 0) scale.image_size = options.image_size;
  if (scale.image_size < 28) throw std::invalid_argument("synth: image size must be >= 28");
  const int threads = resolve_threads(options.threads);
  const auto say = [&](const std::string& message) {
    if (progress) progress(message);
  };

  say(fmt::format("reading Fashion-MNIST from {}", options.fashion_mnist_dir));
  const FashionItems train_items = load_fashion_part(options.fashion_mnist_dir, "train");
  const FashionItems test_items = load_fashion_part(options.fashion_mnist_dir, "t10k");

  fs::create_directories(options.out_dir + "/answers");
  fs::create_directories(options.out_dir + "/meta");

  const std::vector<std::string> splits = {"train", "valid", "test"};
  std::vector<SynthSplitSummary> summaries;
  for (int s = 0; s < 3; ++s) {
    const std::string& split = splits[s];
    // Train images come from Fashion-MNIST's train part, valid/test from its test part.
    const FashionItems& items = s == 0 ? train_items : test_items;
    SplitPlan plan =
        s == 0 ? plan_train(scale, items, options.seed) : plan_eval(scale, items, options.seed, s);
    write_images(images_file(options.out_dir, split), plan.images, items, scale.image_size, threads,
                 progress);

    const std::string texts = fmt::format("{}/{}_texts.jsonl", options.out_dir, split);
    if (split == "test") {
      write_queries(options.out_dir + "/answers/test_texts.jsonl", QuerySchema::kChineseClip,
                    plan.queries);
      std::vector<Query> blind = plan.queries;
      for (auto& query : blind)
        query.image_ids.clear();
      write_queries(texts, QuerySchema::kChineseClip, blind);
    } else {
      write_queries(texts, QuerySchema::kChineseClip, plan.queries);
    }

    std::vector<json> image_rows, query_rows;
    for (const auto& image : plan.images) {
      image_rows.push_back(attributes_json(image.id, "image_id", image.attributes));
    }
    for (std::size_t q = 0; q < plan.queries.size(); ++q) {
      query_rows.push_back(
          attributes_json(plan.queries[q].id, "text_id", plan.query_attributes[q]));
    }
    write_jsonl(fmt::format("{}/meta/{}_image_attributes.jsonl", options.out_dir, split),
                image_rows);
    write_jsonl(fmt::format("{}/meta/{}_query_attributes.jsonl", options.out_dir, split),
                query_rows);

    SynthSplitSummary summary;
    summary.split = split;
    summary.images = static_cast<std::int64_t>(plan.images.size());
    summary.queries = static_cast<std::int64_t>(plan.queries.size());
    for (const auto& query : plan.queries)
      summary.pairs += query.image_ids.size();
    summary.mean_relevant =
        summary.queries ? static_cast<double>(summary.pairs) / summary.queries : 0.0;
    summaries.push_back(summary);
    say(fmt::format("{}: {} images, {} queries, {} pairs, {:.2f} relevant images per query", split,
                    summary.images, summary.queries, summary.pairs, summary.mean_relevant));
  }

  json meta = {{"format", "shopclip-synth"},
               {"format_version", kSynthFormatVersion},
               {"scale", scale.name},
               {"seed", options.seed},
               {"image_size", scale.image_size},
               {"source", "Debian dataset-fashion-mnist"},
               {"splits", json::array()}};
  for (const auto& s : summaries) {
    meta["splits"].push_back({{"split", s.split},
                              {"images", s.images},
                              {"queries", s.queries},
                              {"pairs", s.pairs},
                              {"mean_relevant", s.mean_relevant}});
  }
  write_file_atomic(options.out_dir + "/meta/synth.json", meta.dump(2) + "\n");
  return summaries;
}

std::unordered_map<std::int64_t, ProductAttributes> read_synth_attributes(const std::string& path) {
  LineReader reader(path);
  std::unordered_map<std::int64_t, ProductAttributes> table;
  Line line;
  while (reader.next(&line)) {
    if (line.blank()) continue;
    const json row = reader.parse_json(line);
    try {
      const std::int64_t id = row.contains("image_id") ? row.at("image_id").get<std::int64_t>()
                                                       : row.at("text_id").get<std::int64_t>();
      ProductAttributes a;
      a.category = row.at("category").get<int>();
      a.color = row.at("color").get<int>();
      a.pattern = row.at("pattern").get<int>();
      a.accent = row.at("accent").get<int>();
      a.print = row.at("print").get<int>();
      table[id] = a;
    } catch (const json::exception& e) {
      reader.fail(line, e.what());
    }
  }
  return table;
}

std::vector<std::vector<std::int64_t>> single_attribute_ranking(
    const std::string& attribute, const std::vector<std::int64_t>& query_ids,
    const std::unordered_map<std::int64_t, ProductAttributes>& query_attributes,
    const std::vector<std::int64_t>& pool_ids,
    const std::unordered_map<std::int64_t, ProductAttributes>& image_attributes, int k,
    std::uint64_t seed) {
  int ProductAttributes::*field = nullptr;
  if (attribute == "category") field = &ProductAttributes::category;
  if (attribute == "color") field = &ProductAttributes::color;
  if (attribute == "pattern") field = &ProductAttributes::pattern;
  if (attribute == "accent") field = &ProductAttributes::accent;
  if (attribute == "print") field = &ProductAttributes::print;
  if (!field) {
    throw std::invalid_argument(fmt::format(
        "unknown attribute '{}': expected category, color, pattern, accent or print", attribute));
  }
  std::vector<int> pool_values;
  for (auto id : pool_ids)
    pool_values.push_back(image_attributes.at(id).*field);
  std::vector<std::vector<std::int64_t>> rankings;
  for (std::size_t q = 0; q < query_ids.size(); ++q) {
    const int wanted = query_attributes.at(query_ids[q]).*field;
    Rng rng = Rng::derive(seed, static_cast<std::uint64_t>(query_ids[q]));
    std::vector<std::int64_t> matching, others;
    for (std::size_t i = 0; i < pool_ids.size(); ++i) {
      (pool_values[i] == wanted ? matching : others).push_back(pool_ids[i]);
    }
    rng.shuffle(matching);
    rng.shuffle(others);
    matching.insert(matching.end(), others.begin(), others.end());
    matching.resize(std::min<std::size_t>(matching.size(), k));
    rankings.push_back(std::move(matching));
  }
  return rankings;
}

}  // namespace shopclip::data
