#pragma once
// Small JPEG copies of a split's images for report pages (core/report/pages.h embeds them inline).

#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace shopclip::data {

// Reads the images with the given ids from an {split}_imgs.tsv in one sequential pass and returns
// each as a JPEG (quality 85) fitting in size x size with its aspect ratio kept; images no larger
// than that are re-encoded at their size. An id the file lacks is absent from the result; an
// image that does not decode maps to an empty string (pages show a placeholder). Memory: the
// thumbnails only. Throws DataError when the file cannot be opened.
std::map<std::int64_t, std::string> load_thumbnails(const std::string& images_tsv,
                                                    const std::set<std::int64_t>& ids,
                                                    int size = 112, int threads = 0);

}  // namespace shopclip::data
