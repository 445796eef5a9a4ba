// File: berth/cri/image_service_client.h
//
// The client side of berth's CRI ImageService (runtime.v1) over a unix socket: what the berth CLI
// uses to talk to berthd, and what contrib/cri-client sends its raw requests through. The typed
// calls mirror service::ImageService, so a caller can use either the same way:
//
//   Pull     → PullImage (CRI carries no platform: kInvalidArgument when one is asked for)
//   List     → ListImages(filter.image)
//   Status   → ImageStatus(verbose): the image with chain ID, snapshotter and config from info
//   Remove   → RemoveImage; RemovePinned::kAllow sends kRemovePinnedMetadata
//   FsInfo   → ImageFsInfo.image_filesystems (holds_writable_layers: also in
//              container_filesystems)
//
// Failed calls come back as Errors through FromGrpcStatus (same code, the server's message), with
// the context "<method> via <address>".
//
// Thread safety: one client may be used from many threads (gRPC stubs are thread-safe).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/service/image_service.h"
#include "proto/runtime/v1/api.grpc.pb.h"

namespace berth::cri {

// The socket path of "unix:///ABSOLUTE/PATH". kInvalidArgument for any other form, or a path
// too long for sockaddr_un.
Result<std::filesystem::path> UnixSocketPath(std::string_view address);

// Whether a process accepts connections on the socket at `address`: its pid (from SO_PEERCRED;
// 0 if the kernel does not say), or nullopt when nothing listens (no socket file, connection
// refused). One connect(); does not wait. Errors: kInvalidArgument for a bad address, an errno
// error for other connect failures (e.g. kPermissionDenied).
Result<std::optional<pid_t>> ProbeListener(std::string_view address);

class ImageServiceClient {
 public:
  // A channel to `address` ("unix:///PATH"). Connects lazily: a dead socket shows up as
  // kUnavailable on the first call. `timeout` bounds every call except Pull (which runs until
  // the server finishes or the process exits).
  static Result<std::unique_ptr<ImageServiceClient>> Connect(
      std::string_view address, std::chrono::seconds timeout = std::chrono::seconds(120));

  // The generated stub, for callers that want the wire messages as they are.
  runtime::v1::ImageService::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }

  // PullResult has only image_id and reference (the request's) filled in: CRI returns no more.
  Result<service::PullResult> Pull(const service::PullRequest& request);
  Result<std::vector<service::Image>> List(std::string_view filter = {});
  // nullopt when the server has no such image (an empty response).
  Result<std::optional<service::Image>> Status(std::string_view ref_or_id);
  Result<void> Remove(std::string_view ref_or_id,
                      service::RemovePinned pinned = service::RemovePinned::kRefuse);
  Result<std::vector<service::FilesystemUsage>> FsInfo();

 private:
  ImageServiceClient(std::string address, std::chrono::seconds timeout,
                     std::unique_ptr<runtime::v1::ImageService::Stub> stub)
      : address_(std::move(address)), timeout_(timeout), stub_(std::move(stub)) {}

  std::unique_ptr<grpc::ClientContext> NewContext() const;

  std::string address_;
  std::chrono::seconds timeout_;
  std::unique_ptr<runtime::v1::ImageService::Stub> stub_;
};

}  // namespace berth::cri
