#include "data/thumbnails.h"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <vector>

#include "data/base64.h"
#include "data/error.h"
#include "data/files.h"
#include "data/image.h"
#include "data/parallel.h"
#include "data/resize.h"

namespace shopclip::data {

std::map<std::int64_t, std::string> load_thumbnails(const std::string& images_tsv,
                                                    const std::set<std::int64_t>& ids, int size,
                                                    int threads) {
  LineReader reader(images_tsv);
  // First collect the wanted base64 fields (a report asks for a few hundred at most), then
  // decode and shrink them in parallel.
  std::vector<std::pair<std::int64_t, std::string>> wanted;
  Line read;
  while (wanted.size() < ids.size() && reader.next(&read)) {
    const std::string_view line = read.text;
    const auto tab = line.find('\t');
    if (tab == std::string_view::npos) continue;
    std::int64_t id = 0;
    const auto parsed = std::from_chars(line.data(), line.data() + tab, id);
    if (parsed.ec != std::errc() || parsed.ptr != line.data() + tab || !ids.count(id)) continue;
    wanted.emplace_back(id, line.substr(tab + 1));
  }
  std::vector<std::string> thumbnails(wanted.size());
  parallel_for(0, wanted.size(), resolve_threads(threads), [&](std::size_t i) {
    try {
      const Image image = decode_image(decode_base64(wanted[i].second));
      const double scale =
          std::min(1.0, double(size) / double(std::max(image.width, image.height)));
      const int width = std::max(1, static_cast<int>(image.width * scale + 0.5));
      const int height = std::max(1, static_cast<int>(image.height * scale + 0.5));
      thumbnails[i] =
          encode_jpeg(scale < 1.0 ? resize_bicubic(image, width, height) : image, /*quality=*/85);
    } catch (const DataError&) {
      thumbnails[i].clear();  // shown as "undecodable" on the page
    }
  });
  std::map<std::int64_t, std::string> result;
  for (std::size_t i = 0; i < wanted.size(); ++i)
    result.emplace(wanted[i].first, std::move(thumbnails[i]));
  return result;
}

}  // namespace shopclip::data
