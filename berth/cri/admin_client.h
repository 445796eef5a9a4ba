// File: berth/cri/admin_client.h
//
// The client of berthd's berth.v1.Admin service (admin_server.h), on the same unix socket as the
// CRI ImageService: the berth CLI's daemon mode uses it for pull progress, `berth gc` and
// `berth check`.
//
// Thread safety: every call may run concurrently with the others (one gRPC channel).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/service/image_service.h"
#include "proto/berth/v1/admin.grpc.pb.h"

namespace berth::cri {

class AdminClient {
 public:
  // A channel to `address` ("unix:///PATH"); connects lazily (a dead socket is kUnavailable on
  // the first call). `timeout` bounds CollectGarbage and Check, not WatchPullProgress.
  // Errors: kInvalidArgument for a bad address.
  static Result<std::unique_ptr<AdminClient>> Connect(
      std::string_view address, std::chrono::seconds timeout = std::chrono::seconds(600));

  // Streams the progress of the pull of `reference` (empty: of every pull; see admin_server.h),
  // calling `on_update` with the pulls followed for each update, from this thread, until the
  // server ends the stream (success) or `context` is cancelled (context.TryCancel() from another
  // thread: kCancelled). The first update comes as soon as the server subscribed. Errors: the
  // server's (kUnimplemented from a berthd without the Admin service), kUnavailable.
  Result<void> WatchPullProgress(
      std::string_view reference,
      const std::function<void(const std::vector<service::PullStatus>&)>& on_update,
      grpc::ClientContext& context);

  Result<gc::CollectReport> CollectGarbage(bool dry_run);
  Result<service::CheckReport> Check(const service::CheckOptions& options);

 private:
  AdminClient(std::string address, std::chrono::seconds timeout,
              std::unique_ptr<berth::v1::Admin::Stub> stub)
      : address_(std::move(address)), timeout_(timeout), stub_(std::move(stub)) {}

  std::string address_;
  std::chrono::seconds timeout_;
  std::unique_ptr<berth::v1::Admin::Stub> stub_;
};

}  // namespace berth::cri
