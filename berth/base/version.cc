#include "berth/base/version.h"

namespace berth {

std::string_view Version() { return BERTH_VERSION; }

std::string_view GitRevision() { return BERTH_GIT_REVISION; }

}  // namespace berth
