#include "cmd/berth/pull_progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cmd/berth/common.h"

namespace berth::cli {
namespace {

using Clock = std::chrono::steady_clock;
using service::BlobState;
using service::BlobStatus;
using service::PullStatus;

// "layer 2/5", "config", "manifest" (an index is a manifest to a reader).
std::string BlobLabel(const BlobStatus& blob, size_t layer_number, size_t layer_count) {
  if (blob.layer) return fmt::format("layer {}/{}", layer_number, layer_count);
  return blob.media_type.find("config") != std::string::npos ? "config" : "manifest";
}

std::string ShortId(const std::string& digest) { return digest.substr(digest.find(':') + 1, 12); }

// The board's state names, but "done" and "present" where people read them.
std::string_view StateWord(BlobState state) {
  if (state == BlobState::kCommitted) return "done";
  if (state == BlobState::kCached) return "present";
  return service::BlobStateName(state);
}

std::string Rate(int64_t bytes, Clock::duration elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  if (seconds <= 0 || bytes <= 0) return "";
  return HumanSize(static_cast<int64_t>(static_cast<double>(bytes) / seconds)) + "/s";
}

// One blob of a pull with its label, as every view names it.
struct LabeledBlob {
  std::string label;  // "layer 2/5"
  const BlobStatus* blob;
};

std::vector<LabeledBlob> Label(const PullStatus& pull) {
  size_t layers = 0;
  for (const BlobStatus& blob : pull.blobs) layers += blob.layer ? 1 : 0;
  std::vector<LabeledBlob> labeled;
  size_t layer_number = 0;
  for (const BlobStatus& blob : pull.blobs) {
    if (blob.layer) ++layer_number;
    labeled.push_back({BlobLabel(blob, layer_number, layers), &blob});
  }
  return labeled;
}

// Bytes this pull fetched (blobs found present fetched nothing) and unpacked.
struct Totals {
  int64_t fetched = 0;
  uint64_t unpacked = 0;
  size_t layers = 0;
};

Totals Sum(const std::vector<PullStatus>& pulls) {
  Totals totals;
  for (const PullStatus& pull : pulls) {
    for (const BlobStatus& blob : pull.blobs) {
      if (blob.state != BlobState::kCached) totals.fetched += blob.fetched_bytes;
      totals.unpacked += blob.unpacked_bytes;
      totals.layers += blob.layer ? 1 : 0;
    }
  }
  return totals;
}

std::string Summary(const Result<service::PullResult>& result, double seconds,
                    const Totals& totals) {
  if (!result) return fmt::format("pull failed after {:.2f} s", seconds);
  std::string rate =
      seconds > 0 && totals.fetched > 0
          ? " at " +
                HumanSize(static_cast<int64_t>(static_cast<double>(totals.fetched) / seconds)) +
                "/s"
          : "";
  return fmt::format("pulled {} in {:.2f} s: {} layers, {} fetched{}, {} unpacked",
                     result->reference, seconds, totals.layers, HumanSize(totals.fetched), rate,
                     HumanSize(static_cast<int64_t>(totals.unpacked)));
}

// When each blob was first seen downloading, for its rate.
class DownloadClock {
 public:
  Clock::duration Elapsed(const BlobStatus& blob, Clock::time_point now) {
    if (blob.state == BlobState::kWaiting) return {};
    auto [start, inserted] = started_.emplace(blob.digest, now);
    return now - start->second;
  }

 private:
  std::map<std::string, Clock::time_point> started_;
};

class LiveView final : public ProgressView {
 public:
  LiveView(std::FILE* terminal, int terminal_fd) : terminal_(terminal), fd_(terminal_fd) {}

  void Update(const std::vector<PullStatus>& pulls) override {
    std::lock_guard lock(mutex_);
    last_ = pulls;
    const Clock::time_point now = Clock::now();
    if (now - drawn_at_ < std::chrono::milliseconds(100)) return;
    Draw(now);
  }

  void Finish(const Result<service::PullResult>& result, double seconds) override {
    std::lock_guard lock(mutex_);
    Draw(Clock::now());
    std::fprintf(terminal_, "%s\n", Summary(result, seconds, Sum(last_)).c_str());
    std::fflush(terminal_);
  }

 private:
  void Draw(Clock::time_point now) {
    drawn_at_ = now;
    std::vector<std::string> lines;
    for (const PullStatus& pull : last_) {
      for (const LabeledBlob& labeled : Label(pull)) lines.push_back(Line(labeled, now));
    }
    // Back to the first line drawn last time, then every line anew (erased first).
    if (drawn_lines_ > 0) std::fprintf(terminal_, "\x1b[%zuA", drawn_lines_);
    const size_t width = Width();
    for (std::string& line : lines) {
      if (line.size() > width) line.resize(width);
      std::fprintf(terminal_, "\r\x1b[2K%s\n", line.c_str());
    }
    drawn_lines_ = lines.size();
    std::fflush(terminal_);
  }

  std::string Line(const LabeledBlob& labeled, Clock::time_point now) {
    const BlobStatus& blob = *labeled.blob;
    std::string bytes = blob.state == BlobState::kDownloading
                            ? HumanSize(blob.fetched_bytes) + " / " + HumanSize(blob.total_bytes)
                            : HumanSize(blob.total_bytes);
    std::string line = fmt::format("{:<11} {:<12}  {:<11}  {:>21}", labeled.label,
                                   ShortId(blob.digest), StateWord(blob.state), bytes);
    if (blob.unpacked_bytes > 0) {
      line += "  unpacked " + HumanSize(static_cast<int64_t>(blob.unpacked_bytes));
    }
    if (blob.state == BlobState::kDownloading) {
      std::string rate = Rate(blob.fetched_bytes, clock_.Elapsed(blob, now));
      if (!rate.empty()) line += "  " + rate;
    } else {
      clock_.Elapsed(blob, now);
    }
    return line;
  }

  size_t Width() const {
    winsize size{};
    if (::ioctl(fd_, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col - 1;
    return 79;
  }

  std::FILE* terminal_;
  int fd_;
  std::mutex mutex_;
  std::vector<PullStatus> last_;
  size_t drawn_lines_ = 0;
  Clock::time_point drawn_at_;
  DownloadClock clock_;
};

class LineView final : public ProgressView {
 public:
  explicit LineView(std::FILE* out) : out_(out) {}

  void Update(const std::vector<PullStatus>& pulls) override {
    std::lock_guard lock(mutex_);
    last_ = pulls;
    const Clock::time_point now = Clock::now();
    for (const PullStatus& pull : pulls) {
      for (const LabeledBlob& labeled : Label(pull)) Report(labeled, now);
      if (pull.state == service::PullState::kFailed && !failure_shown_) {
        failure_shown_ = true;
        std::fprintf(out_, "pull failed: %s\n", pull.error.c_str());
      }
    }
    std::fflush(out_);
  }

  void Finish(const Result<service::PullResult>& result, double seconds) override {
    std::lock_guard lock(mutex_);
    std::fprintf(out_, "%s\n", Summary(result, seconds, Sum(last_)).c_str());
    std::fflush(out_);
  }

 private:
  // What has been said of one blob.
  struct Said {
    bool fetched = false;
    bool unpacked = false;
  };

  void Report(const LabeledBlob& labeled, Clock::time_point now) {
    const BlobStatus& blob = *labeled.blob;
    Said& said = said_[blob.digest];
    const Clock::duration elapsed = clock_.Elapsed(blob, now);
    const std::string id = ShortId(blob.digest);
    if (blob.state == BlobState::kCached) {
      if (!said.fetched) {
        std::fprintf(out_, "%s  %s  %s  already present\n", labeled.label.c_str(), id.c_str(),
                     HumanSize(blob.total_bytes).c_str());
      }
      said.fetched = said.unpacked = true;
      return;
    }
    const bool fetched = blob.state == BlobState::kUnpacking || blob.state == BlobState::kCommitted;
    if (fetched && !said.fetched) {
      said.fetched = true;
      std::string rate = Rate(blob.total_bytes, elapsed);
      std::fprintf(out_, "%s  %s  %s  fetched%s\n", labeled.label.c_str(), id.c_str(),
                   HumanSize(blob.total_bytes).c_str(),
                   rate.empty() ? "" : (" at " + rate).c_str());
    }
    if (blob.layer && blob.state == BlobState::kCommitted && !said.unpacked) {
      said.unpacked = true;
      std::fprintf(out_, "%s  %s  unpacked %s\n", labeled.label.c_str(), id.c_str(),
                   HumanSize(static_cast<int64_t>(blob.unpacked_bytes)).c_str());
    }
  }

  std::FILE* out_;
  std::mutex mutex_;
  std::vector<PullStatus> last_;
  std::map<std::string, Said> said_;
  bool failure_shown_ = false;
  DownloadClock clock_;
};

class JsonView final : public ProgressView {
 public:
  explicit JsonView(std::ostream& out) : out_(out) {}

  void Update(const std::vector<PullStatus>& pulls) override {
    std::lock_guard lock(mutex_);
    last_ = pulls;
    const Clock::time_point now = Clock::now();
    for (const PullStatus& pull : pulls) {
      for (const LabeledBlob& labeled : Label(pull)) Report(pull, labeled, now);
    }
    out_.flush();
  }

  void Finish(const Result<service::PullResult>& result, double seconds) override {
    std::lock_guard lock(mutex_);
    const Totals totals = Sum(last_);
    nlohmann::json event;
    if (result) {
      event = {{"event", "pulled"},
               {"reference", result->reference},
               {"image_id", result->image_id.ToString()},
               {"seconds", seconds},
               {"fetched_bytes", totals.fetched},
               {"unpacked_bytes", totals.unpacked}};
    } else {
      event = {{"event", "failed"}, {"error", result.error().ToString()}};
    }
    out_ << event.dump() << "\n";
    out_.flush();
  }

 private:
  struct Sent {
    BlobState state = BlobState::kWaiting;
    Clock::time_point at;
    bool any = false;
  };

  void Report(const PullStatus& pull, const LabeledBlob& labeled, Clock::time_point now) {
    const BlobStatus& blob = *labeled.blob;
    Sent& sent = sent_[blob.digest];
    const bool moving =
        blob.state == BlobState::kDownloading || blob.state == BlobState::kUnpacking;
    const bool due = !sent.any || sent.state != blob.state ||
                     (moving && now - sent.at >= std::chrono::milliseconds(250));
    if (!due) return;
    sent = {.state = blob.state, .at = now, .any = true};
    nlohmann::json event = {{"event", "blob"},
                            {"reference", pull.reference},
                            {"label", labeled.label},
                            {"digest", blob.digest},
                            {"media_type", blob.media_type},
                            {"state", service::BlobStateName(blob.state)},
                            {"fetched_bytes", blob.fetched_bytes},
                            {"total_bytes", blob.total_bytes},
                            {"unpacked_bytes", blob.unpacked_bytes}};
    out_ << event.dump() << "\n";
  }

  std::ostream& out_;
  std::mutex mutex_;
  std::vector<PullStatus> last_;
  std::map<std::string, Sent> sent_;
};

}  // namespace

std::unique_ptr<ProgressView> MakeLiveView(std::FILE* terminal, int terminal_fd) {
  return std::make_unique<LiveView>(terminal, terminal_fd);
}

std::unique_ptr<ProgressView> MakeLineView(std::FILE* out) {
  return std::make_unique<LineView>(out);
}

std::unique_ptr<ProgressView> MakeJsonView(std::ostream& out) {
  return std::make_unique<JsonView>(out);
}

}  // namespace berth::cli
