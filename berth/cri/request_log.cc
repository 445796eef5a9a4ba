#include "berth/cri/request_log.h"

#include "berth/base/error.h"
#include "berth/base/log.h"

namespace berth::cri {

grpc::Status RequestLog::Done(grpc::Status status) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started_);
  std::string_view code =
      status.ok() ? "OK"
                  : ErrorCodeName(static_cast<ErrorCode>(static_cast<int>(status.error_code())));
  if (status.ok()) {
    log::Info("cri.request",
              {{"method", method_}, {"ref", reference_}, {"ms", ms.count()}, {"code", code}});
  } else {
    log::Warn("cri.request", {{"method", method_},
                              {"ref", reference_},
                              {"ms", ms.count()},
                              {"code", code},
                              {"error", status.error_message()}});
  }
  return status;
}

}  // namespace berth::cri
