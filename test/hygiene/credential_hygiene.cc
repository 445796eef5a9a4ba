#include "test/hygiene/credential_hygiene.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "berth/base/log.h"
#include "testing/secret_sentinel.h"

namespace berth::testing {
namespace {

// Keeps every formatted line it receives.
class CapturingSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> Take() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> lines;
    lines.swap(lines_);
    return lines;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    lines_.emplace_back(formatted.data(), formatted.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;  // guarded by mutex_ (base_sink's)
};

CapturingSink& Sink() {
  static std::shared_ptr<CapturingSink> sink = [] {
    auto made = std::make_shared<CapturingSink>();
    log::AddSinkForTest(made);
    return made;
  }();
  return *sink;
}

// Shows where in `text` a leak is, without flooding the failure message.
std::string Excerpt(const std::string& text) {
  constexpr size_t kMax = 300;
  return text.size() <= kMax ? text : text.substr(0, kMax) + "…";
}

int Check(const std::string& source, const std::string& text) {
  std::vector<std::string> found = FindSecrets(text);
  for (const std::string& what : found) {
    ADD_FAILURE() << "credential sentinel leaked into " << source << ": " << what << "\n  "
                  << Excerpt(text);
  }
  return static_cast<int>(found.size());
}

class HygieneListener final : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override {
    // Whatever came before this test (suite set-up) is checked by the first test's end.
  }
  void OnTestEnd(const ::testing::TestInfo&) override { CheckForLeakedSecrets(); }
};

// Installed before main(). The listener is appended after gtest's result printer, and gtest
// calls OnTestEnd listeners in reverse order, so the check's failures count for the test that
// just ended and are printed with it.
const bool kInstalled = [] {
  Sink();
  ::testing::UnitTest::GetInstance()->listeners().Append(new HygieneListener);
  return true;
}();

}  // namespace

int CheckForLeakedSecrets() {
  (void)kInstalled;
  int leaks = 0;
  for (const std::string& line : Sink().Take()) leaks += Check("a log line", line);
  for (const ProductOutput& output : TakeProductOutput()) {
    leaks += Check(output.source, output.text);
  }
  return leaks;
}

}  // namespace berth::testing
