// File: berth/cri/request_log.h
//
// RequestLog writes the one log line of a CRI request when it ends:
//   cri.request method=PullImage ref=busybox ms=812 code=OK
// at info level, or at warning level with `error=<status message>` when it failed. Both the
// standalone handlers (image_service_server.h) and front mode (image_service_front.h) use it, so
// a request reads the same in either mode.
//
// Thread safety: one RequestLog per request, used by the thread handling it.
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <string>
#include <string_view>

namespace berth::cri {

class RequestLog {
 public:
  // `method` must outlive the RequestLog (a string literal).
  RequestLog(std::string_view method, std::string reference)
      : method_(method),
        reference_(std::move(reference)),
        started_(std::chrono::steady_clock::now()) {}

  // Logs the line for `status` and returns `status`.
  grpc::Status Done(grpc::Status status);

 private:
  std::string_view method_;
  std::string reference_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace berth::cri
