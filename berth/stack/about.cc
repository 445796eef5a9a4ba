#include "berth/stack/about.h"

#include <fmt/format.h>

#include "berth/base/version.h"
#include "berth/config/config.h"

namespace berth::stack {

std::string About(std::string_view program) {
  std::string snapshotters;
  for (config::SnapshotterKind kind : config::kSnapshotterKinds) {
    if (!snapshotters.empty()) snapshotters += ' ';
    snapshotters += config::SnapshotterName(kind);
  }
  return fmt::format("{} {}\nrevision: {}\nsnapshotters: {}\n", program, Version(), GitRevision(),
                     snapshotters);
}

}  // namespace berth::stack
