// Tests for the HTML/SVG page toolkit: escaping and UTF-8 handling, base64 against RFC 4648
// vectors, chart structure (bar/point counts, tick and axis labels, legends, truncation with a
// tooltip), degenerate data (empty, single point, all zero, NaN/inf, many bins) still giving
// balanced markup, caller mistakes throwing, and Page::write replacing a file atomically.
//
// With SHOPCLIP_HTML_DEMO=/path/page.html the DemoPage test also writes its page there, for
// tests/browser/check_page.py to render.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/report/html.h"
#include "data/base64.h"

namespace shopclip::html {
namespace {

namespace fs = std::filesystem;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A 16x16 baseline JPEG (a colour gradient), encoded once with Pillow at quality 50.
const std::string& tiny_jpeg() {
  static const char kBytes[] =
      "\xff\xd8\xff\xe0\x00\x10\x4a\x46\x49\x46\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb\x00"
      "\x43"
      "\x00\x10\x0b\x0c\x0e\x0c\x0a\x10\x0e\x0d\x0e\x12\x11\x10\x13\x18\x28\x1a\x18\x16\x16\x18\x31"
      "\x23"
      "\x25\x1d\x28\x3a\x33\x3d\x3c\x39\x33\x38\x37\x40\x48\x5c\x4e\x40\x44\x57\x45\x37\x38\x50\x6d"
      "\x51"
      "\x57\x5f\x62\x67\x68\x67\x3e\x4d\x71\x79\x70\x64\x78\x5c\x65\x67\x63\xff\xdb\x00\x43\x01\x11"
      "\x12"
      "\x12\x18\x15\x18\x2f\x1a\x1a\x2f\x63\x42\x38\x42\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63"
      "\x63"
      "\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63"
      "\x63"
      "\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\x63\xff\xc0\x00\x11\x08\x00\x10\x00\x10"
      "\x03"
      "\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xc4\x00\x16\x00\x01\x01\x01\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x05\x04\x06\xff\xc4\x00\x17\x10\x01\x00\x03\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x04\x00\x21\x31\xff\xc4\x00\x15\x01\x01\x01\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x02\xff\xc4\x00\x19\x11\x00\x02\x03\x01\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x04\x03\x05\x21\x31\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11"
      "\x00"
      "\x3f\x00\xa8\xee\xcb\x89\x9d\xd9\x73\x0c\x77\x65\xc5\x0e\xec\xb8\x95\x42\x2b\xd1\xe6\x1f\xff"
      "\xd9";
  static const std::string bytes(kBytes, sizeof(kBytes) - 1);
  return bytes;
}

// An uncompressed 24-bit BMP of one colour with a darker diagonal, for varied demo thumbnails.
std::string solid_bmp(int width, int height, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  const int row_bytes = (width * 3 + 3) / 4 * 4;
  const std::uint32_t pixel_bytes = row_bytes * height;
  std::string out;
  const auto u16 = [&](std::uint32_t v) {
    out += static_cast<char>(v & 0xFF);
    out += static_cast<char>((v >> 8) & 0xFF);
  };
  const auto u32 = [&](std::uint32_t v) {
    u16(v & 0xFFFF);
    u16(v >> 16);
  };
  out += "BM";
  u32(14 + 40 + pixel_bytes);
  u32(0);
  u32(14 + 40);
  u32(40);
  u32(width);
  u32(height);
  u16(1);
  u16(24);
  u32(0);
  u32(pixel_bytes);
  u32(2835);
  u32(2835);
  u32(0);
  u32(0);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const bool diagonal = std::abs(x - y) < 2;
      out += static_cast<char>(diagonal ? b / 2 : b);
      out += static_cast<char>(diagonal ? g / 2 : g);
      out += static_cast<char>(diagonal ? r / 2 : r);
    }
    out.append(row_bytes - width * 3, '\0');
  }
  return out;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size()))
    ++n;
  return n;
}

// Texts of all elements carrying `css_class` (e.g. every tick label), in order.
std::vector<std::string> texts_of_class(const std::string& svg, const std::string& css_class) {
  std::vector<std::string> texts;
  const std::regex pattern("<text class=\"" + css_class + "\"[^>]*>([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), pattern);
       it != std::sregex_iterator(); ++it)
    texts.push_back((*it)[1]);
  return texts;
}

// Tick labels of one axis ("x-axis" or "y-axis"): the texts inside its <g>, nested groups included.
std::vector<std::string> axis_ticks(const std::string& svg, const std::string& axis) {
  const std::size_t start = svg.find("<g class=\"" + axis + "\">");
  if (start == std::string::npos) return {};
  int depth = 0;
  std::size_t pos = start;
  while (pos < svg.size()) {
    if (svg.compare(pos, 3, "<g ") == 0 || svg.compare(pos, 3, "<g>") == 0) ++depth;
    if (svg.compare(pos, 4, "</g>") == 0 && --depth == 0) break;
    ++pos;
  }
  return texts_of_class(svg.substr(start, pos - start), "tick-label");
}

// Values of attribute `name` on every <rect class="bar">.
std::vector<double> bar_attribute(const std::string& svg, const std::string& name) {
  std::vector<double> values;
  const std::regex rect("<rect class=\"bar\"[^>]*>");
  const std::regex attribute(" " + name + "=\"([-0-9.]+)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator();
       ++it) {
    const std::string tag = it->str();
    std::smatch match;
    if (std::regex_search(tag, match, attribute)) values.push_back(std::stod(match[1]));
  }
  return values;
}

// Checks that tags nest and close: every element is closed in order, except HTML void elements
// and self-closing SVG elements; <style> content is skipped. Returns "" or what is wrong.
std::string unbalanced_tags(const std::string& html) {
  static const std::set<std::string> kVoid = {"area", "base",  "br",   "col",  "embed",  "hr",
                                              "img",  "input", "link", "meta", "source", "wbr"};
  std::vector<std::string> open;
  std::size_t pos = 0;
  while ((pos = html.find('<', pos)) != std::string::npos) {
    if (html.compare(pos, 4, "<!--") == 0) {
      pos = html.find("-->", pos);
      if (pos == std::string::npos) return "unterminated comment";
      continue;
    }
    const std::size_t end = html.find('>', pos);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(pos);
    const std::string tag = html.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '!') continue;  // <!DOCTYPE html>
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty()) return "</" + name + "> closes nothing";
      if (open.back() != name) return "</" + name + "> closes <" + open.back() + ">";
      open.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \t\n/"));
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0])))
      return "bad tag <" + tag + ">";
    if (tag.back() == '/' || kVoid.count(name) > 0) continue;
    open.push_back(name);
    if (name == "style") {
      pos = html.find("</style>", pos);
      if (pos == std::string::npos) return "unterminated <style>";
    }
  }
  if (!open.empty()) return "<" + open.back() + "> never closed";
  return "";
}

// What every chart must be: one balanced <svg class="chart"> of the given kind, role="img", with
// <title> as first child.
void expect_chart(const std::string& svg, const std::string& kind) {
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u) << svg.substr(0, 80);
  EXPECT_EQ(svg.substr(svg.size() - 6), "</svg>");
  EXPECT_EQ(count(svg, "<svg"), 1u);
  EXPECT_NE(svg.find("class=\"chart\""), std::string::npos);
  EXPECT_NE(svg.find("data-chart=\"" + kind + "\""), std::string::npos);
  EXPECT_NE(svg.find("role=\"img\""), std::string::npos);
  EXPECT_EQ(svg.find("<title>"), svg.find('>') + 1) << "<title> must be the first child of <svg>";
  EXPECT_EQ(unbalanced_tags(svg), "");
  EXPECT_FALSE(std::regex_search(svg, std::regex("[=\" ,LM]-?(nan|inf)")))
      << "a NaN or infinity leaked into coordinates";
  EXPECT_NE(svg.find("Noto Sans CJK SC"), std::string::npos);
}

// True when tick values are evenly spaced by 1, 2 or 5 x 10^k ("round numbers").
bool round_ticks(const std::vector<double>& ticks) {
  if (ticks.size() < 2) return false;
  const double step = ticks[1] - ticks[0];
  if (!(step > 0)) return false;
  for (std::size_t i = 1; i < ticks.size(); ++i)
    if (std::fabs(ticks[i] - ticks[i - 1] - step) > step * 1e-6) return false;
  const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  return std::fabs(mantissa - 1) < 1e-6 || std::fabs(mantissa - 2) < 1e-6 ||
         std::fabs(mantissa - 5) < 1e-6;
}

std::vector<double> parse_numbers(const std::vector<std::string>& labels) {
  std::vector<double> values;
  for (const auto& label : labels)
    values.push_back(std::stod(label));
  return values;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---------------------------------------------------------------------------------------------

TEST(HtmlEscape, EscapesTheFiveSpecialCharacters) {
  EXPECT_EQ(escape("a & b < c > d \" e ' f"), "a &amp; b &lt; c &gt; d &quot; e &#39; f");
  EXPECT_EQ(escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
  EXPECT_EQ(escape("&amp;"), "&amp;amp;");  // not idempotent: escaping twice is visible
  EXPECT_EQ(escape(""), "");
  EXPECT_EQ(escape("plain text 123"), "plain text 123");
}

TEST(HtmlEscape, KeepsCjkAndRepairsInvalidUtf8) {
  EXPECT_EQ(escape("高级感托特包斜挎"), "高级感托特包斜挎");
  EXPECT_EQ(escape("tab\tnew\nline"), "tab\tnew\nline");
  EXPECT_EQ(escape(std::string("a\x01"
                               "b\x1f"
                               "c",
                               5)),
            "abc");
  EXPECT_EQ(escape("bad \xff byte"), "bad \xEF\xBF\xBD byte");
  EXPECT_EQ(escape("cut \xE9\xAB"), "cut \xEF\xBF\xBD\xEF\xBF\xBD");  // truncated 3-byte sequence
  EXPECT_EQ(escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");          // overlong '/'
  EXPECT_EQ(escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST(HtmlText, DisplayColumnsCountWideCharactersTwice) {
  EXPECT_EQ(display_columns(""), 0u);
  EXPECT_EQ(display_columns("abc"), 3u);
  EXPECT_EQ(display_columns("连衣裙"), 6u);
  EXPECT_EQ(display_columns("T恤 M"), 5u);
  EXPECT_EQ(display_columns("ＡＢ"), 4u);  // full-width forms
}

TEST(HtmlText, TruncateKeepsWholeCharactersAndMarksTheCut) {
  EXPECT_EQ(truncate_columns("short", 10), "short");
  EXPECT_EQ(truncate_columns("exactly10!", 10), "exactly10!");
  EXPECT_EQ(truncate_columns("abcdefghijk", 5), "abcd…");
  // 4 columns leave 3 for characters: one CJK character (2) fits, a second would not.
  EXPECT_EQ(truncate_columns("女装连衣裙", 4), "女…");
  EXPECT_EQ(truncate_columns("女装连衣裙", 5), "女装…");
  EXPECT_EQ(truncate_columns("abc", 0), "");
  const std::string cut = truncate_columns("夏季新款女装连衣裙雪纺碎花长裙", 9);
  EXPECT_LE(display_columns(cut), 9u);
  EXPECT_EQ(escape(cut), cut) << "a UTF-8 sequence was split";
}

TEST(HtmlDataUri, BuildsUriAndRejectsBadMime) {
  EXPECT_EQ(data_uri("foobar", "text/plain"), "data:text/plain;base64,Zm9vYmFy");
  EXPECT_EQ(data_uri("", "image/png"), "data:image/png;base64,");
  EXPECT_EQ(data_uri("f", "image/svg+xml"), "data:image/svg+xml;base64,Zg==");
  EXPECT_THROW(data_uri("x", ""), std::invalid_argument);
  EXPECT_THROW(data_uri("x", "image/png\" onload=\"x"), std::invalid_argument);
  EXPECT_THROW(data_uri("x", "a,b"), std::invalid_argument);
}

TEST(HtmlDataUri, SniffsImageSignatures) {
  EXPECT_EQ(sniff_image_mime(tiny_jpeg()), "image/jpeg");
  EXPECT_EQ(sniff_image_mime("\x89PNG\r\n\x1A\nrest"), "image/png");
  EXPECT_EQ(sniff_image_mime("GIF89a..."), "image/gif");
  EXPECT_EQ(sniff_image_mime(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), "image/webp");
  EXPECT_EQ(sniff_image_mime(solid_bmp(2, 2, 1, 2, 3)), "image/bmp");
  EXPECT_EQ(sniff_image_mime("hello"), "");
  EXPECT_EQ(sniff_image_mime(""), "");
}

TEST(HtmlThumbnail, EmbedsImageWithCaptionAndClass) {
  const std::string figure = thumbnail(tiny_jpeg(), "#1 <id 42> 连衣裙", "hit");
  EXPECT_EQ(figure.rfind("<figure class=\"thumb hit\">", 0), 0u);
  EXPECT_NE(
      figure.find("<img src=\"data:image/jpeg;base64," + data::encode_base64(tiny_jpeg()) + "\""),
      std::string::npos);
  EXPECT_NE(figure.find("<figcaption>#1 &lt;id 42&gt; 连衣裙</figcaption>"), std::string::npos);
  EXPECT_NE(figure.find("alt=\"#1 &lt;id 42&gt; 连衣裙\""), std::string::npos);
  EXPECT_EQ(unbalanced_tags(figure), "");

  const std::string bmp = thumbnail(solid_bmp(4, 4, 200, 10, 10), "bmp", "miss");
  EXPECT_NE(bmp.find("data:image/bmp;base64,"), std::string::npos);
  EXPECT_NE(bmp.find("class=\"thumb miss\""), std::string::npos);
}

TEST(HtmlThumbnail, MissingImageIsAPlaceholderNotABrokenImg) {
  const std::string figure = thumbnail("", "id 7", "missed-truth");
  EXPECT_EQ(figure.find("<img"), std::string::npos);
  EXPECT_NE(figure.find("no-image"), std::string::npos);
  EXPECT_NE(figure.find("class=\"thumb missed-truth\""), std::string::npos);
  EXPECT_THROW(thumbnail(tiny_jpeg(), "x", "hit\" onclick=\"x"), std::invalid_argument);
  const std::string grid = thumbnail_grid({figure, figure});
  EXPECT_EQ(count(grid, "<figure"), 2u);
  EXPECT_EQ(grid.rfind("<div class=\"thumbs\">", 0), 0u);
}

// ---------------------------------------------------------------------------------------------
// Histogram

TEST(HtmlHistogram, GroupedSeriesDrawOneBarPerBinAndSeries) {
  const std::vector<double> edges = {0, 10, 20, 30, 40, 50};
  const std::string svg = histogram_svg(
      "Query length <chars>", edges,
      {{"train", {5, 9, 3, 1, 0}}, {"valid", {1, 2, 3, 4, 5}}, {"test", {2, 2, 2, 2, 2}}},
      "characters", "queries");
  expect_chart(svg, "histogram");
  EXPECT_EQ(count(svg, "class=\"bar\""), 15u);
  EXPECT_EQ(count(svg, "class=\"series\""), 3u);
  EXPECT_NE(svg.find("<title>Query length &lt;chars&gt;</title>"), std::string::npos);
  EXPECT_EQ(svg.find("<chars>"), std::string::npos);
  EXPECT_NE(svg.find("class=\"legend\""), std::string::npos);
  for (const char* name : {">train<", ">valid<", ">test<"})
    EXPECT_NE(svg.find(name), std::string::npos) << name;
  EXPECT_EQ(texts_of_class(svg, "axis-label"), (std::vector<std::string>{"queries", "characters"}));
  // Uniform bins: a linear x axis with round ticks covering the edges.
  const auto labels = texts_of_class(svg, "tick-label");
  EXPECT_NE(std::find(labels.begin(), labels.end(), "0"), labels.end());
  EXPECT_NE(std::find(labels.begin(), labels.end(), "50"), labels.end());
  // Tooltips name the series and bin.
  EXPECT_NE(svg.find("<title>valid [20, 30): 3</title>"), std::string::npos);
  // y axis reaches the largest count.
  const auto heights = bar_attribute(svg, "height");
  ASSERT_EQ(heights.size(), 15u);
  EXPECT_GT(heights[1], heights[0]);  // 9 > 5
  EXPECT_DOUBLE_EQ(heights[4], 0);    // a zero count is a flat bar
}

TEST(HtmlHistogram, OverlayDrawsFullWidthBars) {
  const std::vector<double> edges = {0, 1, 2, 3};
  const std::vector<Bars> series = {{"a", {1, 2, 3}}, {"b", {3, 2, 1}}};
  const auto grouped = bar_attribute(histogram_svg("h", edges, series, "x", "y"), "width");
  ChartOptions options;
  options.overlay = true;
  const std::string overlaid_svg = histogram_svg("h", edges, series, "x", "y", options);
  const auto overlaid = bar_attribute(overlaid_svg, "width");
  const auto overlaid_x = bar_attribute(overlaid_svg, "x");
  ASSERT_EQ(grouped.size(), 6u);
  ASSERT_EQ(overlaid.size(), 6u);
  EXPECT_NEAR(overlaid[0], 2 * grouped[0], 0.02);
  EXPECT_DOUBLE_EQ(overlaid_x[0], overlaid_x[3]);  // bin 0 of both series at the same place
  EXPECT_NE(overlaid_svg.find("fill-opacity=\"0.55\""), std::string::npos);
}

TEST(HtmlHistogram, NormaliseShowsEachSeriesAsShare) {
  ChartOptions options;
  options.normalise = true;
  const std::string svg = histogram_svg(
      "share", {0, 1, 2}, {{"big", {300, 100}}, {"small", {3, 1}}}, "bin", "queries", options);
  expect_chart(svg, "histogram");
  EXPECT_NE(svg.find(">queries (% of series)<"), std::string::npos);
  EXPECT_NE(svg.find("<title>big [0, 1): 75.00% (300)</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>small [0, 1): 75.00% (3)</title>"), std::string::npos);
  // Same share, same bar height, although the counts differ by 100x.
  const auto heights = bar_attribute(svg, "height");
  ASSERT_EQ(heights.size(), 4u);
  EXPECT_DOUBLE_EQ(heights[0], heights[2]);
  const auto ticks = parse_numbers(texts_of_class(svg, "tick-label"));
  EXPECT_LE(*std::max_element(ticks.begin(), ticks.end()), 100.0);
}

TEST(HtmlHistogram, NonUniformBinsAreLabelledByTheirEdges) {
  const std::string svg =
      histogram_svg("sizes", {0, 1, 5, 100, 1000}, {{"", {4, 3, 2, 1}}}, "KiB", "images");
  expect_chart(svg, "histogram");
  const auto labels = texts_of_class(svg, "tick-label");
  for (const char* edge : {"0", "1", "5", "100", "1000"})
    EXPECT_NE(std::find(labels.begin(), labels.end(), edge), labels.end()) << edge;
  // Equal-width bars although the bins are not.
  const auto widths = bar_attribute(svg, "width");
  ASSERT_EQ(widths.size(), 4u);
  EXPECT_NEAR(widths[0], widths[3], 0.02);
  EXPECT_EQ(svg.find("class=\"legend\""), std::string::npos) << "one unnamed series: no legend";
}

TEST(HtmlHistogram, DegenerateDataGivesAValidChart) {
  for (const auto& edges : std::vector<std::vector<double>>{{}, {3}}) {
    const std::string svg = histogram_svg("empty", edges, {{"s", {}}}, "x", "y");
    expect_chart(svg, "histogram");
    EXPECT_NE(svg.find(">no data<"), std::string::npos);
    EXPECT_EQ(count(svg, "class=\"bar\""), 0u);
  }
  const std::string no_series = histogram_svg("none", {0, 1, 2}, {}, "x", "y");
  expect_chart(no_series, "histogram");
  EXPECT_NE(no_series.find(">no data<"), std::string::npos);

  const std::string zeros = histogram_svg("zeros", {0, 1, 2, 3}, {{"a", {0, 0, 0}}}, "x", "y");
  expect_chart(zeros, "histogram");
  EXPECT_EQ(count(zeros, "class=\"bar\""), 3u);
  EXPECT_NE(zeros.find(">all values are 0<"), std::string::npos);
  const auto zero_ticks = parse_numbers(axis_ticks(zeros, "y-axis"));
  EXPECT_TRUE(std::is_sorted(zero_ticks.begin(), zero_ticks.end()));

  const std::string with_nan =
      histogram_svg("gaps", {0, 1, 2, 3}, {{"a", {1, kNaN, kInf}}}, "x", "y");
  expect_chart(with_nan, "histogram");
  EXPECT_EQ(count(with_nan, "class=\"bar\""), 1u);

  const std::string all_nan =
      histogram_svg("all missing", {0, 1, 2}, {{"a", {kNaN, kNaN}}}, "x", "y");
  expect_chart(all_nan, "histogram");
  EXPECT_NE(all_nan.find(">no data<"), std::string::npos);

  ChartOptions normalised;
  normalised.normalise = true;  // a series summing to 0 has no shares: zero, not NaN
  const std::string zero_total =
      histogram_svg("zero total", {0, 1, 2}, {{"a", {0, 0}}}, "x", "y", normalised);
  expect_chart(zero_total, "histogram");
  EXPECT_EQ(count(zero_total, "class=\"bar\""), 2u);
}

TEST(HtmlHistogram, ManyBinsKeepTickLabelsReadable) {
  std::vector<double> edges, values;
  for (int i = 0; i <= 1000; ++i)
    edges.push_back(i * 0.5);
  for (int i = 0; i < 1000; ++i)
    values.push_back(std::sin(i * 0.01) * 100 + 100);
  const std::string svg = histogram_svg("fine", edges, {{"a", values}}, "x", "y");
  expect_chart(svg, "histogram");
  EXPECT_EQ(count(svg, "class=\"bar\""), 1000u);
  std::vector<double> x_ticks;
  for (const auto& label : axis_ticks(svg, "x-axis"))
    x_ticks.push_back(std::stod(label));
  EXPECT_LE(x_ticks.size(), 12u);
  EXPECT_TRUE(round_ticks(x_ticks));

  // Non-uniform and many: edge labels are thinned out.
  std::vector<double> log_edges, log_values;
  for (int i = 0; i <= 300; ++i)
    log_edges.push_back(std::pow(1.02, i));
  log_values.assign(300, 1);
  const std::string log_svg = histogram_svg("log", log_edges, {{"a", log_values}}, "x", "y");
  expect_chart(log_svg, "histogram");
  EXPECT_LE(texts_of_class(log_svg, "tick-label").size(), 40u);
}

TEST(HtmlHistogram, CallerMistakesThrow) {
  EXPECT_THROW(histogram_svg("t", {0, 1, 2}, {{"a", {1}}}, "x", "y"), std::invalid_argument);
  EXPECT_THROW(histogram_svg("t", {0, 2, 1}, {{"a", {1, 1}}}, "x", "y"), std::invalid_argument);
  EXPECT_THROW(histogram_svg("t", {0, 0, 1}, {{"a", {1, 1}}}, "x", "y"), std::invalid_argument);
  EXPECT_THROW(histogram_svg("t", {0, kNaN, 1}, {{"a", {1, 1}}}, "x", "y"), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Bar chart

TEST(HtmlBarChart, OneBarPerLabelAndSeriesWithCjkLabels) {
  const std::vector<std::string> labels = {"连衣裙", "T恤", "<b>bold</b>", "运动鞋"};
  const std::string svg = bar_chart_svg(
      "Top keywords", labels, {{"train", {120, 80, 40, 10}}, {"valid", {12, 9, 4, 0}}}, "queries");
  expect_chart(svg, "bar");
  EXPECT_EQ(count(svg, "class=\"bar\""), 8u);
  EXPECT_EQ(count(svg, "class=\"value-label\""), 8u);
  EXPECT_NE(svg.find(">连衣裙<"), std::string::npos);
  EXPECT_NE(svg.find(">T恤<"), std::string::npos);
  EXPECT_NE(svg.find(">&lt;b&gt;bold&lt;/b&gt;<"), std::string::npos);
  EXPECT_EQ(svg.find("<b>"), std::string::npos);
  EXPECT_NE(svg.find("<title>train 连衣裙: 120</title>"), std::string::npos);
  EXPECT_EQ(texts_of_class(svg, "axis-label"), std::vector<std::string>{"queries"});
  // Bars are proportional to their values (all start at x = 0).
  const auto widths = bar_attribute(svg, "width");
  ASSERT_EQ(widths.size(), 8u);
  EXPECT_NEAR(widths[0] / widths[1], 120.0 / 80.0, 0.01);
  // x ticks are round and cover the largest value.
  const auto x_ticks = parse_numbers(axis_ticks(svg, "x-axis"));
  EXPECT_TRUE(round_ticks(x_ticks));
  EXPECT_GE(x_ticks.back(), 120.0);
  EXPECT_EQ(x_ticks.front(), 0.0);
}

TEST(HtmlBarChart, LongLabelsAreCutWithTheFullTextInATooltip) {
  const std::string long_label =
      "夏季新款韩版宽松显瘦中长款雪纺碎花连衣裙女装 summer floral chiffon maxi dress";
  ChartOptions options;
  options.max_label_columns = 20;
  const std::string svg = bar_chart_svg("t", {long_label, "短"}, {{"", {3, 4}}}, "n", options);
  expect_chart(svg, "bar");
  EXPECT_NE(svg.find("<title>" + long_label + "</title>"), std::string::npos);
  const auto labels = texts_of_class(svg, "tick-label");
  const std::string cut = truncate_columns(long_label, 20);
  EXPECT_NE(std::find(labels.begin(), labels.end(), cut), labels.end());
  EXPECT_EQ(std::find(labels.begin(), labels.end(), long_label), labels.end());
  EXPECT_NE(std::find(labels.begin(), labels.end(), "短"), labels.end());

  // A cut label can take as many bytes as the original ("…" is 3 bytes): still a tooltip.
  options.max_label_columns = 4;
  const std::string same_size = bar_chart_svg("t", {"abcdef"}, {{"", {1}}}, "n", options);
  EXPECT_NE(same_size.find("<title>abcdef</title><text class=\"tick-label\""), std::string::npos);
  EXPECT_NE(same_size.find(">abc…</text>"), std::string::npos);
}

TEST(HtmlBarChart, NegativeValuesExtendLeftOfZero) {
  const std::string svg = bar_chart_svg("delta", {"a", "b"}, {{"", {-5, 10}}}, "change");
  expect_chart(svg, "bar");
  const auto xs = bar_attribute(svg, "x");
  const auto widths = bar_attribute(svg, "width");
  ASSERT_EQ(xs.size(), 2u);
  EXPECT_NEAR(xs[0] + widths[0], xs[1], 0.02);  // the negative bar ends where the positive starts
  EXPECT_NEAR(widths[1] / widths[0], 2.0, 0.01);
}

TEST(HtmlBarChart, HeightGrowsWithRows) {
  const auto height_of = [](const std::string& svg) {
    std::smatch match;
    EXPECT_TRUE(std::regex_search(svg, match, std::regex("height=\"([0-9]+)\" viewBox")));
    return std::stoi(match[1]);
  };
  std::vector<std::string> labels(50, "label");
  const std::string tall = bar_chart_svg("t", labels, {{"", std::vector<double>(50, 1)}}, "n");
  const std::string short_chart = bar_chart_svg("t", {"a", "b"}, {{"", {1, 2}}}, "n");
  EXPECT_GT(height_of(tall), height_of(short_chart) + 500);
  ChartOptions fixed;
  fixed.height = 300;
  EXPECT_EQ(height_of(bar_chart_svg("t", labels, {{"", std::vector<double>(50, 1)}}, "n", fixed)),
            300);
}

TEST(HtmlBarChart, DegenerateDataGivesAValidChart) {
  const std::string empty = bar_chart_svg("empty", {}, {}, "n");
  expect_chart(empty, "bar");
  EXPECT_NE(empty.find(">no data<"), std::string::npos);
  const std::string no_rows = bar_chart_svg("no rows", {}, {{"a", {}}}, "n");
  expect_chart(no_rows, "bar");
  EXPECT_NE(no_rows.find(">no data<"), std::string::npos);
  const std::string zeros = bar_chart_svg("zeros", {"a", "b"}, {{"", {0, 0}}}, "n");
  expect_chart(zeros, "bar");
  EXPECT_EQ(count(zeros, "class=\"bar\""), 2u);
  EXPECT_NE(zeros.find(">all values are 0<"), std::string::npos);
  const std::string with_nan =
      bar_chart_svg("gaps", {"a", "b", "c"}, {{"", {kNaN, 2, -kInf}}}, "n");
  expect_chart(with_nan, "bar");
  EXPECT_EQ(count(with_nan, "class=\"bar\""), 1u);
  const auto row_labels = texts_of_class(with_nan, "tick-label");
  EXPECT_NE(std::find(row_labels.begin(), row_labels.end(), "a"), row_labels.end())
      << "a row without a value keeps its label";
  EXPECT_THROW(bar_chart_svg("t", {"a", "b"}, {{"", {1}}}, "n"), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Line chart

TEST(HtmlLineChart, PointsLegendAndRoundTicks) {
  const std::string svg =
      line_chart_svg("Training loss",
                     {{"train", {0, 250, 500, 750, 1000}, {4.1, 2.5, 1.7, 1.2, 0.9}},
                      {"valid", {0, 500, 1000}, {4.0, 2.0, 1.5}}},
                     "step", "loss");
  expect_chart(svg, "line");
  EXPECT_EQ(count(svg, "class=\"line\""), 2u);
  EXPECT_EQ(count(svg, "class=\"point\""), 8u);
  EXPECT_NE(svg.find("data-points=\"5\""), std::string::npos);
  EXPECT_NE(svg.find("data-points=\"3\""), std::string::npos);
  EXPECT_NE(svg.find("class=\"legend\""), std::string::npos);
  EXPECT_NE(svg.find(">train<"), std::string::npos);
  EXPECT_NE(svg.find(">valid<"), std::string::npos);
  EXPECT_EQ(texts_of_class(svg, "axis-label"), (std::vector<std::string>{"loss", "step"}));
  const auto y_ticks = parse_numbers(axis_ticks(svg, "y-axis"));
  const auto x_ticks = parse_numbers(axis_ticks(svg, "x-axis"));
  EXPECT_TRUE(round_ticks(y_ticks));
  EXPECT_TRUE(round_ticks(x_ticks));
  EXPECT_LE(y_ticks.front(), 0.9);
  EXPECT_GE(y_ticks.back(), 4.1);
  EXPECT_LE(x_ticks.front(), 0.0);
  EXPECT_GE(x_ticks.back(), 1000.0);
}

TEST(HtmlLineChart, NonFinitePointsAreSkippedAndBreakTheLine) {
  const std::string svg = line_chart_svg(
      "gaps", {{"a", {0, 1, 2, 3, 4}, {1, 2, kNaN, 4, 5}}, {"b", {0, kInf}, {1, 1}}}, "x", "y");
  expect_chart(svg, "line");
  EXPECT_NE(svg.find("data-points=\"4\""), std::string::npos);
  EXPECT_NE(svg.find("data-points=\"1\""), std::string::npos);
  EXPECT_EQ(count(svg, "class=\"point\""), 5u);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(svg, match, std::regex("data-points=\"4\" d=\"([^\"]*)\"")));
  EXPECT_EQ(count(match[1], "M"), 2u) << match[1];
  EXPECT_EQ(count(match[1], "L"), 2u) << match[1];
}

TEST(HtmlLineChart, DegenerateDataGivesAValidChart) {
  const std::string none = line_chart_svg("none", {}, "x", "y");
  expect_chart(none, "line");
  EXPECT_NE(none.find(">no data<"), std::string::npos);

  const std::string empty_series = line_chart_svg("empty", {{"a", {}, {}}}, "x", "y");
  expect_chart(empty_series, "line");
  EXPECT_NE(empty_series.find(">no data<"), std::string::npos);
  EXPECT_NE(empty_series.find("data-points=\"0\""), std::string::npos);

  const std::string single = line_chart_svg("single", {{"a", {3}, {0.5}}}, "x", "y");
  expect_chart(single, "line");
  EXPECT_EQ(count(single, "class=\"point\""), 1u);
  EXPECT_EQ(single.find(">no data<"), std::string::npos);
  const auto single_ticks = parse_numbers(texts_of_class(single, "tick-label"));
  EXPECT_GE(single_ticks.size(), 4u);  // both axes still have a span around the point

  const std::string flat = line_chart_svg("flat", {{"a", {0, 1, 2}, {0, 0, 0}}}, "x", "y");
  expect_chart(flat, "line");
  EXPECT_EQ(count(flat, "class=\"point\""), 3u);
  const auto flat_ticks = parse_numbers(axis_ticks(flat, "y-axis"));
  ASSERT_FALSE(flat_ticks.empty());
  EXPECT_LT(flat_ticks.front(), 0.0) << "a flat line at 0 is drawn mid-height";
  EXPECT_GT(flat_ticks.back(), 0.0);

  const std::string all_nan =
      line_chart_svg("all missing", {{"a", {kNaN, 1}, {1, kNaN}}}, "x", "y");
  expect_chart(all_nan, "line");
  EXPECT_NE(all_nan.find(">no data<"), std::string::npos);

  EXPECT_THROW(line_chart_svg("t", {{"a", {1, 2}, {1}}}, "x", "y"), std::invalid_argument);
}

TEST(HtmlLineChart, LongSeriesHaveNoMarkersAndLargeValuesUseSuffixes) {
  Series curve{"throughput", {}, {}};
  for (int i = 0; i < 2000; ++i) {
    curve.x.push_back(i * 10);
    curve.y.push_back(150000 + 100000 * std::sin(i * 0.01));
  }
  const std::string svg = line_chart_svg("images/s", {curve}, "step", "images/s");
  expect_chart(svg, "line");
  EXPECT_EQ(count(svg, "class=\"point\""), 0u);
  EXPECT_NE(svg.find("data-points=\"2000\""), std::string::npos);
  const auto y_labels = axis_ticks(svg, "y-axis");
  ASSERT_GE(y_labels.size(), 3u);
  for (const auto& label : y_labels)
    EXPECT_TRUE(label == "0" || label.back() == 'k') << label;

  // A learning-rate schedule: tiny values keep distinct labels.
  const std::string lr =
      line_chart_svg("lr", {{"lr", {0, 100, 200, 300}, {0, 5e-5, 2.5e-5, 1e-6}}}, "step", "lr");
  const auto lr_labels = axis_ticks(lr, "y-axis");
  EXPECT_NE(std::find(lr_labels.begin(), lr_labels.end(), "5e-5"), lr_labels.end());
  EXPECT_EQ(std::set<std::string>(lr_labels.begin(), lr_labels.end()).size(), lr_labels.size());
  EXPECT_TRUE(round_ticks(parse_numbers(lr_labels)));
}

TEST(HtmlLineChart, SeriesBeyondThePaletteAreDashed) {
  std::vector<Series> series;
  for (int s = 0; s < 12; ++s)
    series.push_back({"s" + std::to_string(s), {0, 1}, {double(s), double(s + 1)}});
  const std::string svg = line_chart_svg("many", series, "x", "y");
  expect_chart(svg, "line");
  EXPECT_EQ(count(svg, "class=\"line\""), 12u);
  // The 11th and 12th lines repeat the first two colours, dashed (line and legend swatch).
  EXPECT_EQ(count(svg, "stroke-dasharray"), 4u);
  EXPECT_TRUE(std::regex_search(
      svg, std::regex("data-series=\"s10\"><path class=\"line\"[^>]*stroke-dasharray")));
  EXPECT_FALSE(std::regex_search(
      svg, std::regex("data-series=\"s0\"><path class=\"line\"[^>]*stroke-dasharray")));
}

// ---------------------------------------------------------------------------------------------
// Table, page

TEST(HtmlTable, HeadersEscapedCellsAsGiven) {
  const std::string html =
      table({"query", "R@1 <%>"}, {{"连衣裙", "<b>71.2</b>"}, {"a&amp;b", "3"}});
  EXPECT_NE(html.find("<th>R@1 &lt;%&gt;</th>"), std::string::npos);
  EXPECT_NE(html.find("<td><b>71.2</b></td>"), std::string::npos);
  EXPECT_NE(html.find("<td>a&amp;b</td>"), std::string::npos);
  EXPECT_EQ(count(html, "<tr>"), 3u);
  EXPECT_EQ(unbalanced_tags(html), "");
  EXPECT_THROW(table({"a", "b"}, {{"1"}}), std::invalid_argument);
  EXPECT_EQ(count(table({}, {{"1", "2", "3"}}), "<td>"), 3u);
  EXPECT_EQ(table({"a"}, {}).find("<td>"), std::string::npos);
}

TEST(HtmlPage, IsSelfContainedUtf8WithCjkFont) {
  Page page("Retrieval report <valid>");
  page.heading(2, "Queries & results");
  page.paragraph("高级感托特包斜挎 <b>not bold</b>");
  page.raw("<p class=\"raw\">kept</p>");
  const std::string html = page.str();
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_NE(html.find("Noto Sans CJK SC"), std::string::npos);
  EXPECT_NE(html.find("sans-serif"), std::string::npos);
  EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
  EXPECT_NE(html.find("<title>Retrieval report &lt;valid&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("<h1>Retrieval report &lt;valid&gt;</h1>"), std::string::npos);
  EXPECT_NE(html.find("<h2>Queries &amp; results</h2>"), std::string::npos);
  EXPECT_NE(html.find("<p>高级感托特包斜挎 &lt;b&gt;not bold&lt;/b&gt;</p>"), std::string::npos);
  EXPECT_NE(html.find("<p class=\"raw\">kept</p>"), std::string::npos);
  EXPECT_NE(html.find("figure.hit"), std::string::npos);
  EXPECT_NE(html.find("figure.miss"), std::string::npos);
  EXPECT_NE(html.find("dashed"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(unbalanced_tags(html), "");
  EXPECT_THROW(page.heading(0, "x"), std::invalid_argument);
  EXPECT_THROW(page.heading(7, "x"), std::invalid_argument);
  EXPECT_THROW(page.add_style("</style><script>"), std::invalid_argument);
}

// The checker must itself catch unbalanced markup, or the balance assertions prove nothing.
TEST(HtmlPage, TagBalanceCheckerDetectsErrors) {
  EXPECT_EQ(unbalanced_tags("<div><p>x</p></div>"), "");
  EXPECT_NE(unbalanced_tags("<div><p>x</div>"), "");
  EXPECT_NE(unbalanced_tags("<svg><g></svg>"), "");
  EXPECT_NE(unbalanced_tags("<svg>"), "");
  EXPECT_NE(unbalanced_tags("</g>"), "");
  EXPECT_EQ(unbalanced_tags("<svg><rect/><img src=\"x\"></svg>"), "");
}

fs::path scratch_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("shopclip_html_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(HtmlPage, WriteReplacesTheFileAtomically) {
  const fs::path dir = scratch_dir("write");
  const fs::path path = dir / "report.html";
  {
    std::ofstream old(path);
    old << "old page";
  }
  Page page("new");
  page.paragraph("连衣裙");
  page.write(path.string());
  EXPECT_EQ(read_file(path), page.str());
  EXPECT_FALSE(fs::exists(dir / "report.html.tmp"));

  // The .tmp path cannot be created (a directory is in the way): the write fails naming the
  // page, and the old page is untouched because nothing is ever written to `path` directly.
  fs::create_directories(dir / "report.html.tmp");
  Page other("other");
  try {
    other.write(path.string());
    ADD_FAILURE() << "write should have failed";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
  EXPECT_EQ(read_file(path), page.str());
  fs::remove_all(dir / "report.html.tmp");

  // Rename onto a non-empty directory fails: error names the path, no .tmp is left behind.
  const fs::path blocked = dir / "blocked.html";
  fs::create_directories(blocked / "child");
  EXPECT_THROW(other.write(blocked.string()), std::runtime_error);
  EXPECT_FALSE(fs::exists(dir / "blocked.html.tmp"));

  EXPECT_THROW(other.write((dir / "missing_dir" / "page.html").string()), std::runtime_error);
  fs::remove_all(dir);
}

// Everything on one page, as the reports use it; checked for balance here and rendered by
// tests/browser/check_page.py when SHOPCLIP_HTML_DEMO names where to write it.
TEST(HtmlPage, DemoPageWithEveryChartAndThumbnails) {
  Page page("shopclip HTML toolkit demo — 电商图文检索");
  page.heading(2, "Data statistics");
  page.paragraph("Query length per split (characters). 查询长度分布。");
  ChartOptions share;
  share.normalise = true;
  page.raw(histogram_svg("Query length by split", {0, 4, 8, 12, 16, 20, 24, 28, 32},
                         {{"train", {800, 21000, 62000, 71000, 48000, 22000, 9000, 3000}},
                          {"valid", {20, 410, 1300, 1420, 1010, 510, 220, 60}},
                          {"test", {15, 420, 1250, 1480, 990, 530, 240, 70}}},
                         "query length (characters)", "queries", share));
  page.raw(histogram_svg(
      "Images per query", {1, 2, 3, 5, 10, 50},
      {{"train", {180000, 52000, 14000, 3500, 500}}, {"valid", {3600, 1000, 300, 90, 10}}},
      "ground-truth images", "queries"));
  ChartOptions overlay = share;
  overlay.overlay = true;
  std::vector<double> ratio_edges;
  std::vector<Bars> ratios = {{"train", {}}, {"valid", {}}};
  for (int i = 0; i <= 120; ++i)
    ratio_edges.push_back(0.4 + i * 0.01);
  for (int i = 0; i < 120; ++i) {
    ratios[0].values.push_back(9000 * std::exp(-std::pow((i - 55) / 18.0, 2)));
    ratios[1].values.push_back(200 * std::exp(-std::pow((i - 70) / 22.0, 2)));
  }
  page.raw(histogram_svg("Image aspect ratio (120 bins, overlaid)", ratio_edges, ratios,
                         "width / height", "images", overlay));
  page.raw(bar_chart_svg("Top query keywords",
                         {"连衣裙", "T恤", "运动鞋", "手机壳", "双肩包",
                          "夏季新款韩版宽松显瘦中长款雪纺碎花连衣裙女装", "<unknown>"},
                         {{"train", {5400, 4100, 3800, 2900, 2500, 1200, 30}},
                          {"valid", {110, 85, 70, 66, 41, 25, 0}}},
                         "queries"));
  page.heading(2, "Training");
  std::vector<Series> curves = {{"train loss", {}, {}}, {"valid loss", {}, {}}};
  for (int step = 0; step <= 3000; step += 25) {
    curves[0].x.push_back(step);
    curves[0].y.push_back(0.8 + 3.4 * std::exp(-step / 600.0) + 0.05 * std::sin(step * 0.3));
  }
  for (int step = 0; step <= 3000; step += 500) {
    curves[1].x.push_back(step);
    curves[1].y.push_back(step == 1500 ? kNaN : 1.0 + 3.1 * std::exp(-step / 700.0));
  }
  page.raw(line_chart_svg("Loss", curves, "step", "InfoNCE loss"));
  page.raw(line_chart_svg("Empty chart", {}, "step", "value"));
  page.heading(2, "Retrieval examples");
  page.raw(table({"query", "R@1", "R@5", "R@10"}, {{escape("高级感托特包斜挎"), "1", "1", "1"},
                                                   {escape("儿童 <夏季> 凉鞋"), "0", "1", "1"}}));
  page.paragraph("Query: 高级感托特包斜挎");
  std::vector<std::string> figures;
  figures.push_back(thumbnail(tiny_jpeg(), "#1 id 1076345\nscore 0.83", "hit"));
  figures.push_back(thumbnail(solid_bmp(48, 48, 220, 60, 60), "#2 id 517602\nscore 0.79", "miss"));
  figures.push_back(thumbnail(solid_bmp(48, 32, 60, 120, 220), "#3 id 88012\n蓝色托特包", "miss"));
  figures.push_back(
      thumbnail(solid_bmp(32, 48, 240, 200, 60), "truth id 99120 (rank 37)", "missed-truth"));
  figures.push_back(thumbnail("", "truth id 99121 (no image)", "missed-truth"));
  page.raw(thumbnail_grid(figures));
  const std::string html = page.str();

  EXPECT_EQ(unbalanced_tags(html), "");
  EXPECT_EQ(count(html, "<svg "), 6u);
  EXPECT_EQ(count(html, "</svg>"), 6u);
  EXPECT_EQ(count(html, "<figure"), 5u);
  EXPECT_EQ(count(html, "<img "), 4u);
  EXPECT_EQ(count(html, "data-chart=\"histogram\""), 3u);
  EXPECT_EQ(count(html, "data-chart=\"bar\""), 1u);
  EXPECT_EQ(count(html, "data-chart=\"line\""), 2u);

  if (const char* demo = std::getenv("SHOPCLIP_HTML_DEMO"); demo != nullptr && *demo != '\0') {
    page.write(demo);
    EXPECT_EQ(read_file(demo), html);
  }
}

}  // namespace
}  // namespace shopclip::html
