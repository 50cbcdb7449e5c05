#include "core/log.h"

#include <ctime>

#include <unistd.h>

namespace shopclip {

Logger::Logger(int rank, int world_size)
    : rank_(rank), world_size_(world_size), terminal_(isatty(fileno(stderr)) != 0) {}

Logger::~Logger() {
  if (file_) std::fclose(file_);
}

void Logger::open_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (file_) std::fclose(file_);
  file_ = path.empty() ? nullptr : std::fopen(path.c_str(), "a");
}

std::string Logger::prefix(Level level) const {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  const char* tag = level == Level::kWarn ? " WARNING" : (level == Level::kError ? " ERROR" : "");
  if (world_size_ > 1) return fmt::format("[{} rank {}{}] ", stamp, rank_, tag);
  return fmt::format("[{}{}] ", stamp, tag);
}

void Logger::write(Level level, const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string line = prefix(level) + message + "\n";
  if (rank_ == 0 || level != Level::kInfo) {
    if (progress_open_) std::fputs("\n", stderr), progress_open_ = false;
    std::fputs(line.c_str(), stderr);
  }
  if (file_) std::fputs(line.c_str(), file_), std::fflush(file_);
}

void Logger::file_only(const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (file_) std::fputs((prefix(Level::kInfo) + message + "\n").c_str(), file_), std::fflush(file_);
}

void Logger::progress(const std::string& line, bool final) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (rank_ != 0) return;
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    progress_open_ = !final;
    if (final) std::fputs("\n", stderr);
  } else {
    std::fprintf(stderr, "%s%s\n", prefix(Level::kInfo).c_str(), line.c_str());
  }
  std::fflush(stderr);
  if (final && file_)
    std::fputs((prefix(Level::kInfo) + line + "\n").c_str(), file_), std::fflush(file_);
}

std::string format_duration(double seconds) {
  if (seconds < 0 || seconds != seconds) return "?";
  const long total = static_cast<long>(seconds + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02d}m", total / 3600, (total % 3600) / 60);
  if (total >= 60) return fmt::format("{}m{:02d}s", total / 60, total % 60);
  return fmt::format("{}s", total);
}

ProgressBar::ProgressBar(Logger& logger, std::string label, std::int64_t total, std::string unit)
    : logger_(logger),
      label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_render_(start_) {}

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(std::int64_t done, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const int decile = total_ > 0 ? static_cast<int>(10 * done / total_) : 0;
  const double since = std::chrono::duration<double>(now - last_render_).count();
  const bool due = isatty(fileno(stderr)) ? since >= 0.2 : (decile != last_decile_ || since >= 30);
  if (!due) return;
  last_render_ = now;
  last_decile_ = decile;
  render(done, extra, false);
}

void ProgressBar::finish(const std::string& extra) {
  render(total_, extra, true);
}

void ProgressBar::render(std::int64_t done, const std::string& extra, bool final) {
  const double elapsed = seconds();
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double fraction = total_ > 0 ? std::min(1.0, double(done) / total_) : 1.0;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(fraction * kWidth);
  const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
  const double eta = rate > 0 ? (total_ - done) / rate : -1;
  logger_.progress(fmt::format("{} [{}] {:>3.0f}% {}/{} {:.1f} {}/s {} {} {}", label_, bar,
                               100 * fraction, done, total_, rate, unit_, final ? "took" : "ETA",
                               format_duration(final ? elapsed : eta), extra),
                   final);
}

}  // namespace shopclip
