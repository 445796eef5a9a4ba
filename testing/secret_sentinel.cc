#include "testing/secret_sentinel.h"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "berth/base/base64.h"

namespace berth::testing {
namespace {

constexpr size_t kMinWatchedBytes = 12;

// One string to look for and how to describe a match.
struct Pattern {
  std::string needle;
  std::string description;
};

struct State {
  std::mutex mutex;
  std::set<std::string> watched;     // guarded by mutex
  std::vector<Pattern> patterns;     // guarded by mutex
  std::vector<ProductOutput> notes;  // guarded by mutex
};

// The base64 text that encodes `value` whatever the byte alignment it had inside a longer
// string: for each of the three alignments, the characters that depend on `value`'s bytes only.
std::vector<std::string> Base64Cores(std::string_view value) {
  std::vector<std::string> cores;
  for (size_t pad = 0; pad < 3; ++pad) {
    std::string encoded = Base64Encode(std::string(pad, '\0') + std::string(value));
    size_t first = (pad * 8 + 5) / 6;  // characters that mix in the pad bytes
    if (encoded.size() < first + 4 + 8) continue;
    std::string core = encoded.substr(first, encoded.size() - 4 - first);  // end: '=' and mix
    cores.push_back(core);
    std::string url = core;
    std::replace(url.begin(), url.end(), '+', '-');
    std::replace(url.begin(), url.end(), '/', '_');
    if (url != core) cores.push_back(url);
  }
  return cores;
}

void AddPatterns(State& state, std::string_view value, std::string_view what) {
  state.patterns.push_back({std::string(value), std::string(what)});
  for (const std::string& core : Base64Cores(value)) {
    state.patterns.push_back({core, fmt::format("base64 of {}", what)});
  }
}

State& GetState() {
  static State* state = [] {
    auto* made = new State;
    AddPatterns(*made, kSentinelPrefix, "the sentinel credential prefix");
    return made;
  }();
  return *state;
}

}  // namespace

std::string SentinelSecret(std::string_view purpose) {
  return fmt::format("{}-{}", kSentinelPrefix, purpose);
}

void WatchSecret(std::string_view value) {
  if (value.size() < kMinWatchedBytes) return;
  State& state = GetState();
  std::lock_guard lock(state.mutex);
  if (!state.watched.insert(std::string(value)).second) return;
  AddPatterns(state, value, fmt::format("watched secret #{}", state.watched.size()));
}

std::vector<std::string> FindSecrets(std::string_view text) {
  State& state = GetState();
  std::lock_guard lock(state.mutex);
  std::vector<std::string> found;
  for (const Pattern& pattern : state.patterns) {
    size_t at = text.find(pattern.needle);
    if (at != std::string_view::npos) {
      found.push_back(fmt::format("{} at offset {}", pattern.description, at));
    }
  }
  return found;
}

void NoteProductOutput(std::string_view source, std::string_view text) {
  State& state = GetState();
  std::lock_guard lock(state.mutex);
  state.notes.push_back({std::string(source), std::string(text)});
}

std::vector<ProductOutput> TakeProductOutput() {
  State& state = GetState();
  std::vector<ProductOutput> out;
  std::lock_guard lock(state.mutex);
  out.swap(state.notes);
  return out;
}

}  // namespace berth::testing
