#include "core/report/html.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "data/base64.h"
#include "data/files.h"
#include "data/utf8.h"

namespace shopclip::html {
namespace {

// Latin first when a Latin face exists; "Noto Sans CJK SC" carries Latin too, so on a machine
// with only fonts-noto-cjk both scripts come from one family. The others cover Windows/macOS
// readers of a report.
constexpr char kFontFamily[] =
    "'Noto Sans', 'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', 'PingFang SC', "
    "'DejaVu Sans', sans-serif";

// Tableau 10: distinguishable, and still readable in grey-scale print.
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
constexpr std::size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

const char* series_color(std::size_t index) {
  return kPalette[index % kPaletteSize];
}

// Line charts with more series than colours tell the repeats apart by dashes.
const char* series_dash(std::size_t index) {
  static constexpr const char* kDashes[] = {"", "7 4", "2 3", "10 3 2 3"};
  return kDashes[(index / kPaletteSize) % 4];
}

std::string dash_attribute(std::size_t index) {
  const char* dash = series_dash(index);
  return *dash == '\0' ? std::string() : fmt::format(" stroke-dasharray=\"{}\"", dash);
}

constexpr double kFontPx = 12;       // tick labels, legend, axis labels
constexpr double kTitleFontPx = 15;  // chart title

// ---------------------------------------------------------------------------------------------
// UTF-8

constexpr char32_t kReplacement = 0xFFFD;

// Decodes the code point starting at text[pos]. Returns the number of bytes it takes (>= 1);
// an invalid sequence (bad lead or continuation byte, overlong form, surrogate, > U+10FFFF)
// yields kReplacement for one byte and *valid = false.
std::size_t decode_utf8(std::string_view text, std::size_t pos, char32_t* code_point, bool* valid) {
  const std::size_t length = data::decode_utf8(text, pos, code_point);
  *valid = length > 0;
  if (*valid) return length;
  *code_point = kReplacement;
  return 1;
}

// East Asian Wide / Fullwidth ranges that matter for product text (CJK ideographs, kana,
// Hangul, CJK punctuation, full-width forms) plus the common emoji blocks.
bool is_wide(char32_t c) {
  return (c >= 0x1100 && c <= 0x115F) || (c >= 0x2E80 && c <= 0x303E) ||
         (c >= 0x3041 && c <= 0x33FF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xA000 && c <= 0xA4CF) ||
         (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xF900 && c <= 0xFAFF) ||
         (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF60) ||
         (c >= 0xFFE0 && c <= 0xFFE6) || (c >= 0x1F300 && c <= 0x1F64F) ||
         (c >= 0x1F900 && c <= 0x1F9FF) || (c >= 0x20000 && c <= 0x3FFFD);
}

// Rough rendered width in px at `font_px`: wide characters are 1 em, others ~0.6 em (a
// conservative average for sans-serif Latin and digits), so layouts leave room rather than clip.
double text_px(std::string_view text, double font_px) {
  double em = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    char32_t c;
    bool valid;
    pos += decode_utf8(text, pos, &c, &valid);
    em += is_wide(c) ? 1.0 : 0.6;
  }
  return em * font_px;
}

// ---------------------------------------------------------------------------------------------
// Numbers

bool finite(double v) {
  return std::isfinite(v);
}

// Tooltips and value labels: counts exactly, other values to 4 significant digits without an
// exponent in the everyday range.
std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  const double magnitude = std::fabs(v);
  if (magnitude < 1e15 && v == std::round(v)) return fmt::format("{:.0f}", v);
  if (magnitude >= 1e6 || magnitude < 1e-4) return fmt::format("{:.3e}", v);
  if (magnitude >= 1000) return fmt::format("{:.1f}", v);
  return fmt::format("{:.4g}", v);
}

// Decimals needed to tell ticks `step` apart (steps are 1, 2 or 5 x 10^k).
int decimals_for(double step) {
  return std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 12);
}

// "5e-05" -> "5e-5", "1.5e+07" -> "1.5e7": shorter tick labels.
std::string short_exponent(std::string text) {
  const std::size_t e = text.find('e');
  if (e == std::string::npos) return text;
  std::size_t digits = e + 1;
  std::string sign;
  if (digits < text.size() && (text[digits] == '-' || text[digits] == '+')) {
    if (text[digits] == '-') sign = "-";
    ++digits;
  }
  while (digits + 1 < text.size() && text[digits] == '0')
    ++digits;
  return text.substr(0, e + 1) + sign + text.substr(digits);
}

// Tick label for value `v` on an axis with tick spacing `step` whose largest |tick| is
// `max_abs`: round numbers, "k"/"M"/"G" suffixes from 10 000 up, exponent form for tiny ranges.
std::string format_tick(double v, double step, double max_abs) {
  if (std::fabs(v) < step * 1e-9) return "0";
  if (max_abs >= 1e4) {
    double divisor = 1e3;
    const char* suffix = "k";
    if (max_abs >= 1e9) {
      divisor = 1e9, suffix = "G";
    } else if (max_abs >= 1e6) {
      divisor = 1e6, suffix = "M";
    }
    return fmt::format("{:.{}f}{}", v / divisor, decimals_for(step / divisor), suffix);
  }
  if (max_abs < 1e-3) {
    const int digits = std::clamp(
        static_cast<int>(std::floor(std::log10(max_abs)) - std::floor(std::log10(step))), 0, 6);
    return short_exponent(fmt::format("{:.{}e}", v, digits));
  }
  return fmt::format("{:.{}f}", v, decimals_for(step));
}

// A linear axis: data domain [lo, hi] mapped onto pixels [px_lo, px_hi], with round tick values.
struct Scale {
  double lo = 0, hi = 1;
  double step = 0.2;
  std::vector<double> ticks;
  double px_lo = 0, px_hi = 1;

  double operator()(double v) const { return px_lo + (v - lo) / (hi - lo) * (px_hi - px_lo); }
  std::string label(double v) const {
    return format_tick(v, step, std::max(std::fabs(lo), std::fabs(hi)));
  }
};

// Round tick spacing (1, 2 or 5 x 10^k) giving about `target` intervals over `span` > 0.
double nice_step(double span, int target) {
  const double raw = span / std::max(target, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double normalised = raw / magnitude;
  const double factor = normalised < 1.5 ? 1 : normalised < 3 ? 2 : normalised < 7 ? 5 : 10;
  return factor * magnitude;
}

// Scale over data [lo, hi]: widened to round tick values when `expand`, else kept exactly (then
// only the round ticks inside are shown). A missing or empty range becomes something drawable:
// no data -> [0, 1]; a single value v -> around v.
Scale make_scale(double lo, double hi, int target, bool expand) {
  Scale scale;
  if (!finite(lo) || !finite(hi) || lo > hi) {
    lo = 0, hi = 1;
  }
  if (hi - lo <= std::max(std::fabs(lo), std::fabs(hi)) * 1e-12) {
    const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    if (lo == 0) {
      hi = lo + pad;  // all zero: show [0, 1]
    } else {
      lo -= pad, hi += pad;
    }
  }
  if (!finite(hi - lo)) {  // |values| near DBL_MAX: no round ticks, just the ends
    scale.lo = lo, scale.hi = hi, scale.step = hi / 2 - lo / 2;
    scale.ticks = {lo, hi};
    return scale;
  }
  scale.step = nice_step(hi - lo, target);
  if (expand) {
    scale.lo = std::floor(lo / scale.step + 1e-9) * scale.step;
    scale.hi = std::ceil(hi / scale.step - 1e-9) * scale.step;
  } else {
    scale.lo = lo, scale.hi = hi;
  }
  const double first = std::ceil(scale.lo / scale.step - 1e-9);
  for (int i = 0; i <= 100; ++i) {
    double tick = (first + i) * scale.step;
    if (tick > scale.hi + scale.step * 1e-9) break;
    if (std::fabs(tick) < scale.step * 1e-9) tick = 0;
    scale.ticks.push_back(tick);
  }
  return scale;
}

// ---------------------------------------------------------------------------------------------
// SVG pieces

template <class... Args>
void append(std::string& out, fmt::format_string<Args...> format, Args&&... args) {
  fmt::format_to(std::back_inserter(out), format, std::forward<Args>(args)...);
}

// A <text> of `full` cut to `max_columns`; when cut, wrapped in <g> with a <title> tooltip
// holding the full text. `attributes` are inserted into the <text> tag as they are.
std::string text_element(const std::string& full, std::size_t max_columns,
                         const std::string& attributes) {
  const std::string shown = truncate_columns(full, max_columns);
  if (shown == full) return fmt::format("<text {}>{}</text>", attributes, escape(full));
  return fmt::format("<g><title>{}</title><text {}>{}</text></g>", escape(full), attributes,
                     escape(shown));
}

// Columns that fit in `px` at `font_px` (narrow characters).
std::size_t columns_for_px(double px, double font_px) {
  return static_cast<std::size_t>(std::max(4.0, px / (0.6 * font_px)));
}

std::string svg_open(const char* kind, const std::string& title, int width, int height) {
  std::string out;
  append(out,
         "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" data-chart=\"{}\" "
         "role=\"img\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"{}\" "
         "font-size=\"{}\">",
         kind, width, height, width, height, kFontFamily, kFontPx);
  append(out, "<title>{}</title>", escape(title));
  append(out, "<rect class=\"background\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>", width,
         height);
  out += text_element(title, columns_for_px(width - 24, kTitleFontPx),
                      fmt::format("class=\"chart-title\" x=\"{}\" y=\"22\" text-anchor=\"middle\" "
                                  "font-size=\"{}\" font-weight=\"600\" fill=\"#1f2328\"",
                                  width / 2.0, kTitleFontPx));
  return out;
}

struct LegendItem {
  std::string name;
  const char* color;
  bool line;         // a line swatch (line charts) instead of a filled square
  std::string dash;  // the line's stroke-dasharray attribute, or ""
};

// Legend rows starting at (x, y) wrapping within `right`; returns the SVG and its height.
std::pair<std::string, double> legend(const std::vector<LegendItem>& items, double x, double y,
                                      double right, std::size_t max_columns) {
  if (items.empty()) return {"", 0.0};
  constexpr double kRowPx = 18;
  std::string out = "<g class=\"legend\">";
  double cursor = x;
  double row_y = y;
  for (const auto& item : items) {
    const std::string shown = truncate_columns(item.name, max_columns);
    const double swatch_px = item.line ? 20 : 14;
    const double item_px = swatch_px + 5 + text_px(shown, kFontPx) + 16;
    if (cursor > x && cursor + item_px > right) {
      cursor = x;
      row_y += kRowPx;
    }
    out += "<g class=\"legend-item\">";
    if (item.line) {
      append(out,
             "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
             "stroke-width=\"3\"{}/>",
             cursor, row_y - 4, cursor + swatch_px, row_y - 4, item.color, item.dash);
    } else {
      append(out,
             "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{}\"/>",
             cursor + 1, row_y - 10, item.color);
    }
    out += text_element(
        item.name, max_columns,
        fmt::format("x=\"{:.1f}\" y=\"{:.1f}\" fill=\"#1f2328\"", cursor + swatch_px + 5, row_y));
    out += "</g>";
    cursor += item_px;
  }
  out += "</g>";
  return {out, row_y - y + kRowPx};
}

// Plot area inside the SVG.
struct Frame {
  double left, top, right, bottom;  // pixel edges of the plot area
  double width() const { return right - left; }
  double height() const { return bottom - top; }
};

// Horizontal grid lines and tick labels of a value axis on the left.
std::string y_axis(const Scale& scale, const Frame& frame, const std::string& label,
                   std::size_t max_label_columns) {
  std::string out = "<g class=\"y-axis\">";
  for (double tick : scale.ticks) {
    const double y = scale(tick);
    append(out,
           "<line class=\"grid\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
           "stroke=\"#e4e7eb\"/>",
           frame.left, y, frame.right, y);
    append(out,
           "<text class=\"tick-label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" "
           "fill=\"#444\">{}</text>",
           frame.left - 6, y + 4, escape(scale.label(tick)));
  }
  append(out,
         "<line class=\"axis-line\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
         "stroke=\"#444\"/>",
         frame.left, frame.top, frame.left, frame.bottom);
  if (!label.empty()) {
    const double middle = (frame.top + frame.bottom) / 2;
    out += text_element(
        label, std::min(max_label_columns, columns_for_px(frame.height(), kFontPx)),
        fmt::format("class=\"axis-label\" transform=\"rotate(-90)\" x=\"{:.1f}\" y=\"16\" "
                    "text-anchor=\"middle\" fill=\"#1f2328\"",
                    -middle));
  }
  out += "</g>";
  return out;
}

// Tick marks and labels of an x axis at the bottom; `ticks` are (pixel x, label) pairs.
std::string x_axis(const std::vector<std::pair<double, std::string>>& ticks, const Frame& frame,
                   const std::string& label, double svg_width, bool grid) {
  std::string out = "<g class=\"x-axis\">";
  for (const auto& [x, text] : ticks) {
    if (grid) {
      append(out,
             "<line class=\"grid\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
             "stroke=\"#e4e7eb\"/>",
             x, frame.top, x, frame.bottom);
    }
    append(out, "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#444\"/>",
           x, frame.bottom, x, frame.bottom + 5);
    append(out,
           "<text class=\"tick-label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
           "fill=\"#444\">{}</text>",
           x, frame.bottom + 18, escape(text));
  }
  append(out,
         "<line class=\"axis-line\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
         "stroke=\"#444\"/>",
         frame.left, frame.bottom, frame.right, frame.bottom);
  if (!label.empty()) {
    out += text_element(label, columns_for_px(svg_width - 24, kFontPx),
                        fmt::format("class=\"axis-label\" x=\"{:.1f}\" y=\"{:.1f}\" "
                                    "text-anchor=\"middle\" fill=\"#1f2328\"",
                                    (frame.left + frame.right) / 2, frame.bottom + 38));
  }
  out += "</g>";
  return out;
}

std::string note(const Frame& frame, const std::string& text) {
  return fmt::format(
      "<text class=\"no-data\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
      "fill=\"#888\" font-size=\"14\">{}</text>",
      (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2, escape(text));
}

// What a bar chart says when nothing could be drawn, or "" when something was.
std::string empty_data_note(const Frame& frame, bool any_value, bool any_nonzero) {
  if (!any_value) return note(frame, "no data");
  if (!any_nonzero) return note(frame, "all values are 0");
  return {};
}

std::vector<LegendItem> legend_items(const std::vector<std::string>& names, bool line) {
  const bool any_named =
      std::any_of(names.begin(), names.end(), [](const std::string& n) { return !n.empty(); });
  std::vector<LegendItem> items;
  if (!any_named) return items;
  for (std::size_t i = 0; i < names.size(); ++i) {
    items.push_back({names[i].empty() ? fmt::format("series {}", i + 1) : names[i], series_color(i),
                     line, line ? dash_attribute(i) : std::string()});
  }
  return items;
}

// Width of the widest tick label of `scale`.
double widest_tick_px(const Scale& scale) {
  double widest = 0;
  for (double tick : scale.ticks)
    widest = std::max(widest, text_px(scale.label(tick), kFontPx));
  return widest;
}

struct Layout {
  Frame frame;
  int height;
  std::string legend_svg;
};

// Frame for a chart with a value axis on the left (histogram, line chart): title, legend under
// it, y tick labels and rotated y label on the left, x tick labels and x label below.
Layout layout_xy(const ChartOptions& options, const Scale& y_scale,
                 const std::vector<LegendItem>& items, bool has_x_label, bool has_y_label) {
  Layout layout;
  const double width = std::max(options.width, 200);
  layout.height = options.height > 0 ? std::max(options.height, 160) : 360;
  Frame& frame = layout.frame;
  frame.left = 10 + (has_y_label ? 20 : 0) + widest_tick_px(y_scale) + 8;
  frame.right = width - 20;
  auto [legend_svg, legend_px] =
      legend(items, frame.left, 46, frame.right, options.max_label_columns);
  layout.legend_svg = std::move(legend_svg);
  frame.top = 34 + legend_px + 12;
  frame.bottom = layout.height - (has_x_label ? 50 : 28);
  if (frame.height() < 60) {  // a tall legend grows the chart instead of squashing the plot
    layout.height += static_cast<int>(60 - frame.height());
    frame.bottom = layout.height - (has_x_label ? 50 : 28);
  }
  return layout;
}

int y_tick_target(const ChartOptions& options) {
  const int height = options.height > 0 ? options.height : 360;
  return std::clamp((height - 100) / 50, 2, 8);
}

int x_tick_target(const ChartOptions& options) {
  return std::clamp((options.width - 100) / 90, 2, 10);
}

bool uniform_bins(const std::vector<double>& edges) {
  const double first = edges[1] - edges[0];
  for (std::size_t i = 1; i + 1 < edges.size(); ++i) {
    if (std::fabs((edges[i + 1] - edges[i]) - first) > first * 1e-6) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Text

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (std::size_t pos = 0; pos < text.size();) {
    char32_t c;
    bool valid;
    const std::size_t length = decode_utf8(text, pos, &c, &valid);
    if (!valid) {
      out += "\xEF\xBF\xBD";
    } else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      // not allowed in XML 1.0 (SVG); dropped
    } else if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '"') {
      out += "&quot;";
    } else if (c == '\'') {
      out += "&#39;";
    } else {
      out.append(text.substr(pos, length));
    }
    pos += length;
  }
  return out;
}

std::size_t display_columns(std::string_view text) {
  std::size_t columns = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    char32_t c;
    bool valid;
    pos += decode_utf8(text, pos, &c, &valid);
    columns += is_wide(c) ? 2 : 1;
  }
  return columns;
}

std::string truncate_columns(std::string_view text, std::size_t max_columns) {
  if (display_columns(text) <= max_columns) return std::string(text);
  if (max_columns == 0) return "";
  // Keep characters while they fit in max_columns - 1, leaving one column for the ellipsis.
  std::size_t columns = 0;
  std::size_t end = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    char32_t c;
    bool valid;
    const std::size_t length = decode_utf8(text, pos, &c, &valid);
    const std::size_t width = is_wide(c) ? 2 : 1;
    if (columns + width > max_columns - 1) break;
    columns += width;
    pos += length;
    end = pos;
  }
  return std::string(text.substr(0, end)) + "\xE2\x80\xA6";
}

// ---------------------------------------------------------------------------------------------
// Charts

std::string histogram_svg(const std::string& title, const std::vector<double>& edges,
                          const std::vector<Bars>& series, const std::string& x_label,
                          const std::string& y_label, const ChartOptions& options) {
  const std::size_t bins = edges.size() >= 2 ? edges.size() - 1 : 0;
  for (std::size_t i = 0; i < edges.size(); ++i) {
    if (!finite(edges[i]) || (i > 0 && !(edges[i] > edges[i - 1]))) {
      throw std::invalid_argument(fmt::format(
          "histogram '{}': bin edges must be finite and strictly increasing (edge {} is {})", title,
          i, format_value(edges[i])));
    }
  }
  for (const auto& bars : series) {
    if (bins > 0 && bars.values.size() != bins) {
      throw std::invalid_argument(
          fmt::format("histogram '{}': series '{}' has {} values for {} bins", title, bars.name,
                      bars.values.size(), bins));
    }
  }

  // Shown values: counts, or each series' share of its own finite total in %.
  std::vector<std::vector<double>> shown(series.size());
  std::vector<double> totals(series.size(), 0.0);
  double lo = 0, hi = 0;
  bool any_value = false, any_nonzero = false;
  for (std::size_t s = 0; s < series.size() && bins > 0; ++s) {
    for (double v : series[s].values)
      if (finite(v)) totals[s] += v;
    for (double v : series[s].values) {
      double value = v;
      if (options.normalise && finite(v)) value = totals[s] != 0 ? 100.0 * v / totals[s] : 0.0;
      shown[s].push_back(value);
      if (!finite(value)) continue;
      any_value = true;
      any_nonzero = any_nonzero || value != 0;
      lo = std::min(lo, value), hi = std::max(hi, value);
    }
  }

  std::vector<std::string> names;
  for (const auto& bars : series)
    names.push_back(bars.name);
  const Scale y_base = make_scale(lo, hi, y_tick_target(options), true);
  const std::string shown_y_label =
      options.normalise
          ? (y_label.empty() ? std::string("% of series") : y_label + " (% of series)")
          : y_label;
  Layout layout = layout_xy(options, y_base, legend_items(names, false), !x_label.empty(),
                            !shown_y_label.empty());
  const Frame& frame = layout.frame;
  Scale y_scale = y_base;
  y_scale.px_lo = frame.bottom, y_scale.px_hi = frame.top;
  const int width = std::max(options.width, 200);

  std::string out = svg_open("histogram", title, width, layout.height);
  out += layout.legend_svg;
  out += y_axis(y_scale, frame, shown_y_label, options.max_label_columns * 2);

  // x axis: a linear scale over uniform bins; equal-width bins labelled by their edges otherwise.
  std::vector<double> bin_px;  // bins + 1 pixel boundaries
  std::vector<std::pair<double, std::string>> x_ticks;
  if (bins > 0) {
    if (uniform_bins(edges)) {
      Scale x_scale = make_scale(edges.front(), edges.back(), x_tick_target(options), false);
      x_scale.px_lo = frame.left, x_scale.px_hi = frame.right;
      for (double edge : edges)
        bin_px.push_back(x_scale(edge));
      for (double tick : x_scale.ticks)
        x_ticks.emplace_back(x_scale(tick), x_scale.label(tick));
    } else {
      for (std::size_t i = 0; i <= bins; ++i)
        bin_px.push_back(frame.left + frame.width() * static_cast<double>(i) / bins);
      double widest = 0;
      for (double edge : edges)
        widest = std::max(widest, text_px(format_value(edge), kFontPx));
      const double every_px = widest + 10;
      const std::size_t every = std::max<std::size_t>(
          1, static_cast<std::size_t>(std::ceil(every_px / (frame.width() / bins))));
      for (std::size_t i = 0; i <= bins; i += every)
        x_ticks.emplace_back(bin_px[i], format_value(edges[i]));
    }
  } else {
    Scale x_scale = make_scale(0, 1, x_tick_target(options), true);
    x_scale.px_lo = frame.left, x_scale.px_hi = frame.right;
    for (double tick : x_scale.ticks)
      x_ticks.emplace_back(x_scale(tick), x_scale.label(tick));
  }
  out += x_axis(x_ticks, frame, x_label, width, false);

  const double zero_px = y_scale(0);
  for (std::size_t s = 0; s < series.size() && bins > 0; ++s) {
    append(out, "<g class=\"series\" data-series=\"{}\" fill=\"{}\" fill-opacity=\"{}\">",
           escape(series[s].name), series_color(s),
           options.overlay && series.size() > 1 ? "0.55" : "0.9");
    for (std::size_t b = 0; b < bins; ++b) {
      const double value = shown[s][b];
      if (!finite(value)) continue;
      const double bin_width = bin_px[b + 1] - bin_px[b];
      const double gap = bin_width > 6 ? bin_width * 0.12 : 0;
      const double inner = bin_width - gap;
      double x = bin_px[b] + gap / 2, bar_width = inner;
      if (!options.overlay && series.size() > 1) {
        bar_width = inner / series.size();
        x += bar_width * s;
      }
      const double y = y_scale(value);
      std::string tip =
          fmt::format("{}[{}, {}): ", series[s].name.empty() ? "" : series[s].name + " ",
                      format_value(edges[b]), format_value(edges[b + 1]));
      tip += options.normalise
                 ? fmt::format("{:.2f}% ({})", value, format_value(series[s].values[b]))
                 : format_value(value);
      append(out,
             "<rect class=\"bar\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\">"
             "<title>{}</title></rect>",
             x, std::min(y, zero_px), std::max(bar_width, 0.5), std::fabs(zero_px - y),
             escape(tip));
    }
    out += "</g>";
  }
  return out + empty_data_note(frame, any_value, any_nonzero) + "</svg>";
}

std::string bar_chart_svg(const std::string& title, const std::vector<std::string>& labels,
                          const std::vector<Bars>& series, const std::string& x_label,
                          const ChartOptions& options) {
  for (const auto& bars : series) {
    if (bars.values.size() != labels.size()) {
      throw std::invalid_argument(
          fmt::format("bar chart '{}': series '{}' has {} values for {} labels", title, bars.name,
                      bars.values.size(), labels.size()));
    }
  }
  const int width = std::max(options.width, 200);
  const std::size_t rows = series.empty() ? 0 : labels.size();

  double lo = 0, hi = 0;
  bool any_value = false, any_nonzero = false;
  for (const auto& bars : series) {
    for (double v : bars.values) {
      if (!finite(v)) continue;
      any_value = true;
      any_nonzero = any_nonzero || v != 0;
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  Scale x_scale = make_scale(lo, hi, x_tick_target(options), true);

  // Row labels: cut to max_label_columns, and further so they take at most 40% of the width.
  const double label_room = width * 0.4;
  std::vector<std::size_t> label_columns(labels.size(), options.max_label_columns);
  double widest_label = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    std::size_t& columns = label_columns[i];
    while (columns > 4 && text_px(truncate_columns(labels[i], columns), kFontPx) > label_room)
      --columns;
    widest_label = std::max(widest_label, text_px(truncate_columns(labels[i], columns), kFontPx));
  }
  double widest_value = 0;
  if (options.value_labels) {
    for (const auto& bars : series)
      for (double v : bars.values)
        if (finite(v)) widest_value = std::max(widest_value, text_px(format_value(v), kFontPx));
  }

  std::vector<std::string> names;
  for (const auto& bars : series)
    names.push_back(bars.name);
  Frame frame;
  frame.left = 12 + widest_label + 10;
  frame.right = width - 16 - (options.value_labels ? widest_value + 6 : 0);
  if (lo < 0 && options.value_labels) frame.left += widest_value + 6;
  if (frame.right - frame.left < 80) frame.right = frame.left + 80;
  auto [legend_svg, legend_px] =
      legend(legend_items(names, false), frame.left, 46, width - 12, options.max_label_columns);
  frame.top = 34 + legend_px + 12;
  const double bottom_px = x_label.empty() ? 28 : 50;
  const double row_px_auto = std::max(20.0, 12.0 * series.size() + 10);
  int height;
  if (options.height > 0) {
    height = std::max(options.height, static_cast<int>(frame.top + bottom_px + 60));
  } else {
    height = static_cast<int>(
        std::ceil(frame.top + bottom_px + std::max<double>(rows, 3) * row_px_auto));
  }
  frame.bottom = height - bottom_px;
  const double row_px = rows > 0 ? frame.height() / rows : frame.height();
  x_scale.px_lo = frame.left, x_scale.px_hi = frame.right;

  std::string out = svg_open("bar", title, width, height);
  out += legend_svg;
  std::vector<std::pair<double, std::string>> x_ticks;
  for (double tick : x_scale.ticks)
    x_ticks.emplace_back(x_scale(tick), x_scale.label(tick));
  out += x_axis(x_ticks, frame, x_label, width, true);

  out += "<g class=\"y-axis\">";
  for (std::size_t i = 0; i < rows; ++i) {
    out += text_element(labels[i], label_columns[i],
                        fmt::format("class=\"tick-label\" x=\"{:.1f}\" y=\"{:.1f}\" "
                                    "text-anchor=\"end\" dominant-baseline=\"central\" "
                                    "fill=\"#1f2328\"",
                                    frame.left - 8, frame.top + row_px * (i + 0.5)));
  }
  const double zero_px = x_scale(0);
  append(out,
         "<line class=\"axis-line\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
         "stroke=\"#444\"/>",
         zero_px, frame.top, zero_px, frame.bottom);
  out += "</g>";

  const double pad = row_px * 0.15;
  const double bar_px = series.empty() ? 0 : (row_px - 2 * pad) / series.size();
  for (std::size_t s = 0; s < series.size() && rows > 0; ++s) {
    append(out, "<g class=\"series\" data-series=\"{}\" fill=\"{}\">", escape(series[s].name),
           series_color(s));
    for (std::size_t i = 0; i < rows; ++i) {
      const double value = series[s].values[i];
      if (!finite(value)) continue;
      const double x = x_scale(value);
      const double y = frame.top + row_px * i + pad + bar_px * s;
      const std::string tip = (series[s].name.empty() ? "" : series[s].name + " ") + labels[i] +
                              ": " + format_value(value);
      append(out,
             "<rect class=\"bar\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\">"
             "<title>{}</title></rect>",
             std::min(x, zero_px), y, std::fabs(x - zero_px), std::max(bar_px, 0.5), escape(tip));
      if (options.value_labels) {
        append(out,
               "<text class=\"value-label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\" "
               "dominant-baseline=\"central\" font-size=\"11\" fill=\"#444\">{}</text>",
               value < 0 ? x - 4 : x + 4, y + bar_px / 2, value < 0 ? "end" : "start",
               escape(format_value(value)));
      }
    }
    out += "</g>";
  }
  return out + empty_data_note(frame, any_value, any_nonzero) + "</svg>";
}

std::string line_chart_svg(const std::string& title, const std::vector<Series>& series,
                           const std::string& x_label, const std::string& y_label,
                           const ChartOptions& options) {
  for (const auto& line : series) {
    if (line.x.size() != line.y.size()) {
      throw std::invalid_argument(
          fmt::format("line chart '{}': series '{}' has {} x and {} y values", title, line.name,
                      line.x.size(), line.y.size()));
    }
  }
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_lo = x_lo, y_hi = -x_lo;
  std::size_t points = 0;
  for (const auto& line : series) {
    for (std::size_t i = 0; i < line.x.size(); ++i) {
      if (!finite(line.x[i]) || !finite(line.y[i])) continue;
      ++points;
      x_lo = std::min(x_lo, line.x[i]), x_hi = std::max(x_hi, line.x[i]);
      y_lo = std::min(y_lo, line.y[i]), y_hi = std::max(y_hi, line.y[i]);
    }
  }
  const int width = std::max(options.width, 200);
  if (y_lo == 0 && y_hi == 0)
    y_lo = -1, y_hi = 1;  // a flat line at 0 in the middle, not at the edge
  Scale y_scale = make_scale(y_lo, y_hi, y_tick_target(options), true);
  Scale x_scale = make_scale(x_lo, x_hi, x_tick_target(options), true);
  std::vector<std::string> names;
  for (const auto& line : series)
    names.push_back(line.name);
  Layout layout =
      layout_xy(options, y_scale, legend_items(names, true), !x_label.empty(), !y_label.empty());
  const Frame& frame = layout.frame;
  y_scale.px_lo = frame.bottom, y_scale.px_hi = frame.top;
  x_scale.px_lo = frame.left, x_scale.px_hi = frame.right;

  std::string out = svg_open("line", title, width, layout.height);
  out += layout.legend_svg;
  out += y_axis(y_scale, frame, y_label, options.max_label_columns * 2);
  std::vector<std::pair<double, std::string>> x_ticks;
  for (double tick : x_scale.ticks)
    x_ticks.emplace_back(x_scale(tick), x_scale.label(tick));
  out += x_axis(x_ticks, frame, x_label, width, true);

  for (std::size_t s = 0; s < series.size(); ++s) {
    const Series& line = series[s];
    std::string path;
    std::size_t drawn = 0;
    bool pen_down = false;
    for (std::size_t i = 0; i < line.x.size(); ++i) {
      if (!finite(line.x[i]) || !finite(line.y[i])) {
        pen_down = false;  // a gap: the next point starts a new segment
        continue;
      }
      append(path, "{}{:.2f},{:.2f}", pen_down ? " L" : (path.empty() ? "M" : " M"),
             x_scale(line.x[i]), y_scale(line.y[i]));
      pen_down = true;
      ++drawn;
    }
    const char* color = series_color(s);
    append(out, "<g class=\"series\" data-series=\"{}\">", escape(line.name));
    append(out,
           "<path class=\"line\" data-points=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{}\" "
           "stroke-width=\"2\" stroke-linejoin=\"round\" stroke-linecap=\"round\"{}/>",
           drawn, path, color, dash_attribute(s));
    if (drawn > 0 && (drawn <= options.max_markers || drawn == 1)) {
      for (std::size_t i = 0; i < line.x.size(); ++i) {
        if (!finite(line.x[i]) || !finite(line.y[i])) continue;
        const std::string tip = fmt::format("{}({}, {})", line.name.empty() ? "" : line.name + " ",
                                            format_value(line.x[i]), format_value(line.y[i]));
        append(out,
               "<circle class=\"point\" cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"3\" fill=\"{}\">"
               "<title>{}</title></circle>",
               x_scale(line.x[i]), y_scale(line.y[i]), color, escape(tip));
      }
    }
    out += "</g>";
  }
  if (points == 0) out += note(frame, "no data");
  out += "</svg>";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tables, images

std::string table(const std::vector<std::string>& headers,
                  const std::vector<std::vector<std::string>>& rows_of_escaped_html) {
  std::string out = "<table class=\"data\">";
  if (!headers.empty()) {
    out += "<thead><tr>";
    for (const auto& header : headers)
      append(out, "<th>{}</th>", escape(header));
    out += "</tr></thead>";
  }
  out += "<tbody>";
  for (std::size_t r = 0; r < rows_of_escaped_html.size(); ++r) {
    const auto& row = rows_of_escaped_html[r];
    if (!headers.empty() && row.size() != headers.size()) {
      throw std::invalid_argument(
          fmt::format("table: row {} has {} cells for {} columns", r, row.size(), headers.size()));
    }
    out += "<tr>";
    for (const auto& cell : row)
      append(out, "<td>{}</td>", cell);
    out += "</tr>";
  }
  out += "</tbody></table>";
  return out;
}

// The project's one base64 encoder (data/base64.h); kept under this name for the page code.
std::string data_uri(std::string_view bytes, std::string_view mime) {
  if (mime.empty() || mime.find_first_of("\"'<>, \t\r\n&") != std::string_view::npos) {
    throw std::invalid_argument(fmt::format("data_uri: bad MIME type '{}'", mime));
  }
  std::string out = "data:";
  out.append(mime);
  out += ";base64,";
  out += data::encode_base64(bytes);
  return out;
}

std::string sniff_image_mime(std::string_view bytes) {
  const auto starts = [&](std::string_view prefix) {
    return bytes.size() >= prefix.size() && bytes.substr(0, prefix.size()) == prefix;
  };
  if (starts("\xFF\xD8\xFF")) return "image/jpeg";
  if (starts("\x89PNG\r\n\x1A\n")) return "image/png";
  if (starts("GIF87a") || starts("GIF89a")) return "image/gif";
  if (starts("RIFF") && bytes.size() >= 12 && bytes.substr(8, 4) == "WEBP") return "image/webp";
  if (starts("BM")) return "image/bmp";
  return "";
}

std::string thumbnail(std::string_view jpeg_bytes, const std::string& caption,
                      const std::string& css_class) {
  if (css_class.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_- ") != std::string::npos) {
    throw std::invalid_argument(fmt::format("thumbnail: bad CSS class '{}'", css_class));
  }
  std::string out = "<figure class=\"thumb";
  if (!css_class.empty()) out += " " + css_class;
  out += "\">";
  if (jpeg_bytes.empty()) {
    out += "<div class=\"no-image\">no image</div>";
  } else {
    std::string mime = sniff_image_mime(jpeg_bytes);
    if (mime.empty()) mime = "image/jpeg";
    append(out, "<img src=\"{}\" alt=\"{}\">", data_uri(jpeg_bytes, mime), escape(caption));
  }
  append(out, "<figcaption>{}</figcaption></figure>", escape(caption));
  return out;
}

std::string thumbnail_grid(const std::vector<std::string>& figures_html) {
  std::string out = "<div class=\"thumbs\">";
  for (const auto& figure : figures_html)
    out += figure;
  out += "</div>";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Page

namespace {

constexpr char kPageCss[] = R"css(
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #1f2328; font-size: 15px; line-height: 1.5;
  font-family: "Noto Sans", "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei",
    "PingFang SC", "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.6em; }
h2 { font-size: 1.3em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid #d8dee4; }
h3 { font-size: 1.1em; margin: 1.2em 0 0.4em; }
h4, h5, h6 { font-size: 1em; margin: 1em 0 0.3em; }
p { margin: 0.5em 0; white-space: pre-line; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 12px 0 22px; }
table.data { border-collapse: collapse; margin: 10px 0 22px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { padding: 4px 12px; border-bottom: 1px solid #d8dee4;
  text-align: left; vertical-align: top; }
table.data th { background: #f6f8fa; font-weight: 600; border-bottom: 2px solid #d0d7de; }
table.data tbody tr:nth-child(even) td { background: #fafbfc; }
table.data td.num, table.data th.num { text-align: right; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px;
  margin: 10px 0 22px; }
figure.thumb { margin: 0; padding: 4px; border: 3px solid #d0d7de; border-radius: 6px;
  background: #fff; }
figure.thumb img, figure.thumb .no-image { display: block; width: 100%; height: 140px;
  object-fit: contain; background: #f6f8fa; }
figure.thumb .no-image { display: flex; align-items: center; justify-content: center;
  color: #777; background: #eee; }
figure.thumb figcaption { font-size: 12px; line-height: 1.35; margin-top: 4px;
  white-space: pre-line; overflow-wrap: anywhere; }
figure.hit { border-color: #1a7f37; }
figure.miss { border-color: #cf222e; }
figure.missed-truth { border-style: dashed; border-color: #9a6700; }
footer { margin-top: 40px; color: #777; font-size: 12px; }
)css";

}  // namespace

Page::Page(std::string title) : title_(std::move(title)) {}

void Page::heading(int level, const std::string& text) {
  if (level < 1 || level > 6) {
    throw std::invalid_argument(fmt::format("Page::heading: level {} is not 1..6", level));
  }
  append(body_, "<h{}>{}</h{}>\n", level, escape(text), level);
}

void Page::paragraph(const std::string& text) {
  append(body_, "<p>{}</p>\n", escape(text));
}

void Page::raw(std::string html) {
  body_ += html;
  body_ += '\n';
}

void Page::add_style(std::string css) {
  if (css.find("</style") != std::string::npos) {
    throw std::invalid_argument("Page::add_style: CSS must not contain \"</style\"");
  }
  extra_css_ += css;
  extra_css_ += '\n';
}

std::string Page::str() const {
  std::string out;
  out.reserve(body_.size() + 4096);
  out +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "img-src data:; style-src 'unsafe-inline'\">\n"
      "<meta name=\"generator\" content=\"shopclip\">\n";
  append(out, "<title>{}</title>\n<style>{}{}</style>\n</head>\n<body>\n<main>\n", escape(title_),
         kPageCss, extra_css_);
  append(out, "<h1>{}</h1>\n", escape(title_));
  out += body_;
  out += "<footer>Generated by shopclip.</footer>\n</main>\n</body>\n</html>\n";
  return out;
}

void Page::write(const std::string& path) const {
  data::write_file_atomic(path, str());
}

}  // namespace shopclip::html
