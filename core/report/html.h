#pragma once
// Self-contained HTML pages for `data stats`, `report` and `compare`: inline CSS, inline SVG
// charts, images as data: URIs. A page written here loads nothing from anywhere (its
// Content-Security-Policy forbids it), needs no JavaScript, and is UTF-8 with a font list that
// shows Chinese text ("Noto Sans CJK SC"). No LibTorch: std, fmt only.
//
// Conventions
// - Functions returning HTML return a fragment that is safe to pass to Page::raw.
// - Plain-text arguments (titles, labels, captions, series names) are escaped here; arguments
//   named *_html are inserted as they are and must already be safe.
// - Caller mistakes (mismatched lengths, bad heading level, unsorted bin edges) throw
//   std::invalid_argument; missing or degenerate data (no series, all zero, NaN/inf values, a
//   single point) is not a mistake and yields a chart that says so.
// - Every chart is one <svg class="chart" data-chart="histogram|bar|line" role="img"> whose
//   first child is <title> (the full chart title). Inside: <g class="x-axis">/<g class="y-axis">
//   with <text class="tick-label"> and <text class="axis-label">, one <g class="series"
//   data-series="NAME"> per series, <g class="legend"> when a series is named, and
//   <text class="no-data"> when nothing could be drawn. Bars are <rect class="bar">, line
//   series are <path class="line" data-points="N"> (N = finite points drawn) with a
//   <circle class="point"> per point when a series has at most ChartOptions::max_markers.
//   Labels longer than ChartOptions::max_label_columns are cut with "…" and keep their full
//   text in a <title> tooltip.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace shopclip::html {

// Escapes & < > " ' for use in element text and in quoted attribute values. Also keeps the
// output valid UTF-8 and valid in XML: an invalid UTF-8 byte becomes U+FFFD, and control
// characters other than tab, newline and carriage return are dropped.
std::string escape(std::string_view text);

// Display width in columns of UTF-8 text: East Asian wide characters (CJK, kana, Hangul,
// full-width forms) count 2, others 1; invalid bytes count 1 each.
std::size_t display_columns(std::string_view text);

// `text` cut to at most `max_columns` display columns, the cut marked with a trailing "…" (which
// counts as one column). Never splits a UTF-8 sequence. Returns `text` unchanged when it fits.
// Not escaped.
std::string truncate_columns(std::string_view text, std::size_t max_columns);

// One line-chart series: points (x[i], y[i]); x and y must have equal length. Points where
// either coordinate is NaN or infinite are skipped and break the line there.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

// One bar series: one value per histogram bin or per bar-chart label. NaN/inf values draw no bar.
struct Bars {
  std::string name;
  std::vector<double> values;
};

// Layout and presentation choices shared by the chart functions; the defaults suit a report page.
struct ChartOptions {
  int width = 720;  // SVG width in px (user units); the page CSS scales it down to fit.
  int height = 0;   // SVG height in px; 0 = automatic (360, or by label count for bar charts).
  bool normalise = false;  // histogram: each series as % of its own finite total, so splits of
                           // different size compare; the y label says "% of series".
  bool overlay = false;    // histogram: semi-transparent overlaid bars instead of grouped bars.
  std::size_t max_label_columns = 28;  // labels, legend entries: longer ones are cut with "…".
  bool value_labels = true;            // bar chart: the value printed at the end of each bar.
  std::size_t max_markers = 60;        // line chart: circles on points when a series has at most
                                       // this many finite points (a single point always has one).
};

// Histogram of counts over bins [edges[i], edges[i+1]); each of `series` has edges.size() - 1
// values (e.g. one series per split), drawn grouped (or overlaid, options.overlay) with a legend.
// Uniform bins get a linear x axis with round ticks; non-uniform bins are drawn equal width with
// their edges as tick labels. Throws std::invalid_argument when a series has the wrong number of
// values, or edges are not finite and strictly increasing. Fewer than 2 edges or no series: an
// empty chart saying "no data".
std::string histogram_svg(const std::string& title, const std::vector<double>& edges,
                          const std::vector<Bars>& series, const std::string& x_label,
                          const std::string& y_label, const ChartOptions& options = {});

// Horizontal bar chart: one row per label (e.g. top keywords, CJK labels), one bar per series
// in each row (grouped), values along the x axis (which always includes 0; negative values
// extend left). Each series has labels.size() values, else std::invalid_argument. The height
// grows with the number of rows unless options.height is set.
std::string bar_chart_svg(const std::string& title, const std::vector<std::string>& labels,
                          const std::vector<Bars>& series, const std::string& x_label,
                          const ChartOptions& options = {});

// Line chart (training curves): each series with its own x values, shared axes with round ticks
// and a legend. Throws std::invalid_argument when a series has x.size() != y.size().
std::string line_chart_svg(const std::string& title, const std::vector<Series>& series,
                           const std::string& x_label, const std::string& y_label,
                           const ChartOptions& options = {});

// <table class="data">: `headers` are plain text (escaped here; none = no header row); each row
// holds already-escaped HTML cells. When headers are given every row must have exactly
// headers.size() cells, else std::invalid_argument naming the row.
std::string table(const std::vector<std::string>& headers,
                  const std::vector<std::vector<std::string>>& rows_of_escaped_html);

// "data:<mime>;base64,<base64 of bytes>". Throws std::invalid_argument when `mime` is empty or
// holds characters that would end the attribute or the URI's header (quotes, <, >, comma, space).
std::string data_uri(std::string_view bytes, std::string_view mime);

// The MIME type of image bytes from their signature: image/jpeg, image/png, image/gif,
// image/webp, image/bmp; "" when unknown.
std::string sniff_image_mime(std::string_view bytes);

// <figure class="thumb CSS_CLASS"> with the image as a data: URI (MIME sniffed from the bytes;
// JPEG assumed when unknown) and a <figcaption> of `caption` (escaped; also the img's alt
// text). Empty bytes give a grey "no image" box instead of an <img>, so a page never holds a
// broken image. css_class: e.g. "hit" (green border), "miss" (red), "missed-truth" (dashed);
// several classes separated by spaces are fine; characters other than [A-Za-z0-9_ -] throw
// std::invalid_argument.
std::string thumbnail(std::string_view jpeg_bytes, const std::string& caption,
                      const std::string& css_class);

// <div class="thumbs"> laying out thumbnail() figures (already-safe HTML) in a grid.
std::string thumbnail_grid(const std::vector<std::string>& figures_html);

// A whole page: <!DOCTYPE html>, <meta charset="utf-8">, a CSP that allows only inline styles
// and data: images, the embedded style sheet, then the body parts in the order added.
class Page {
 public:
  explicit Page(std::string title);  // also the <title> and the first <h1>

  // <hN> of plain text; level 1..6 else std::invalid_argument.
  void heading(int level, const std::string& text);
  // <p> of plain text (escaped); newlines stay line breaks.
  void paragraph(const std::string& text);
  // Already-safe HTML (charts, tables, thumbnails from this file) appended as it is.
  void raw(std::string html);
  // Extra CSS rules appended to the embedded style sheet (must not contain "</style").
  void add_style(std::string css);

  std::string str() const;

  // Writes str() to `path` atomically: to path + ".tmp", then rename over `path`, so a reader
  // never sees half a page. Throws std::runtime_error naming `path` (and removes the .tmp file)
  // when it cannot be written.
  void write(const std::string& path) const;

 private:
  std::string title_;
  std::string extra_css_;
  std::string body_;
};

}  // namespace shopclip::html
