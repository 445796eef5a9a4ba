// File: berth/cri/image_service_server.h
//
// The CRI ImageService over gRPC, in both API versions kubelet and crictl speak: runtime.v1 and
// the older runtime.v1alpha2. Each handler only translates: request → service::ImageService call
// → response, and Error → grpc::Status through ToGrpcStatus(). No image logic lives here. This is
// standalone mode; with config `upstream_image_endpoint` berthd serves image_service_front.h
// instead, which forwards to the node runtime's ImageService.
//
//   PullImage    → ImageService::Pull; image_ref = the image ID. A full disk's error names the
//                  filesystem and what to do (ExplainFullDisk over data_directories)
//   ListImages   → ImageService::List(filter.image.image)
//   ImageStatus  → ImageService::Status; a missing image is an empty response; verbose adds
//                  info["info"] = VerboseInfo()
//   RemoveImage  → ImageService::Remove (unknown image: OK). A pinned image is refused
//                  (FAILED_PRECONDITION) unless the call carries the client metadata
//                  `berth-remove-pinned: true` (kRemovePinnedMetadata; `berth rmi --force`
//                  sends it, kubelet never does)
//   ImageFsInfo  → ImageService::FsInfo → image_filesystems (one per filesystem holding the
//                  snapshot root or the content store: mountpoint, bytes allocated and inodes
//                  under those trees, as `du -B1` and a unique-inode count find them), and
//                  (runtime.v1 only: v1alpha2 has no such field) container_filesystems = the
//                  entry holding the snapshot root, where the writable layers (active
//                  snapshots) live
//
// A pull stops when the client cancels the call or its deadline passes: the CancelToken the pull
// honours carries the call's deadline and the client's cancellation (call_cancellation.h).
//
// Every request is logged once, as `cri.request method=… ref=… ms=… code=…` (at warning level
// with `error=…` added when it failed).
//
// Thread safety: gRPC calls the handlers from many threads at once; both services only forward
// to ImageService, which is thread-safe. `images` must outlive both.
#pragma once

#include <filesystem>
#include <vector>

#include "berth/service/image_service.h"
#include "proto/runtime/v1/api.grpc.pb.h"
#include "proto/runtime/v1alpha2/api.grpc.pb.h"

namespace berth::cri {

// Client metadata key with which a RemoveImage call may remove a pinned image (value "true").
inline constexpr std::string_view kRemovePinnedMetadata = "berth-remove-pinned";

struct ServerOptions {
  // berth's directories (the root, the snapshot root): a pull that fails for a full disk says
  // which of their filesystems is full (full_disk.h).
  std::vector<std::filesystem::path> data_directories;
};

class ImageServiceV1 final : public runtime::v1::ImageService::Service {
 public:
  explicit ImageServiceV1(service::ImageService& images, ServerOptions options = {})
      : images_(images), options_(std::move(options)) {}

  grpc::Status ListImages(grpc::ServerContext* context,
                          const runtime::v1::ListImagesRequest* request,
                          runtime::v1::ListImagesResponse* response) override;
  grpc::Status ImageStatus(grpc::ServerContext* context,
                           const runtime::v1::ImageStatusRequest* request,
                           runtime::v1::ImageStatusResponse* response) override;
  grpc::Status PullImage(grpc::ServerContext* context, const runtime::v1::PullImageRequest* request,
                         runtime::v1::PullImageResponse* response) override;
  grpc::Status RemoveImage(grpc::ServerContext* context,
                           const runtime::v1::RemoveImageRequest* request,
                           runtime::v1::RemoveImageResponse* response) override;
  grpc::Status ImageFsInfo(grpc::ServerContext* context,
                           const runtime::v1::ImageFsInfoRequest* request,
                           runtime::v1::ImageFsInfoResponse* response) override;

 private:
  service::ImageService& images_;
  const ServerOptions options_;
};

class ImageServiceV1alpha2 final : public runtime::v1alpha2::ImageService::Service {
 public:
  explicit ImageServiceV1alpha2(service::ImageService& images, ServerOptions options = {})
      : images_(images), options_(std::move(options)) {}

  grpc::Status ListImages(grpc::ServerContext* context,
                          const runtime::v1alpha2::ListImagesRequest* request,
                          runtime::v1alpha2::ListImagesResponse* response) override;
  grpc::Status ImageStatus(grpc::ServerContext* context,
                           const runtime::v1alpha2::ImageStatusRequest* request,
                           runtime::v1alpha2::ImageStatusResponse* response) override;
  grpc::Status PullImage(grpc::ServerContext* context,
                         const runtime::v1alpha2::PullImageRequest* request,
                         runtime::v1alpha2::PullImageResponse* response) override;
  grpc::Status RemoveImage(grpc::ServerContext* context,
                           const runtime::v1alpha2::RemoveImageRequest* request,
                           runtime::v1alpha2::RemoveImageResponse* response) override;
  grpc::Status ImageFsInfo(grpc::ServerContext* context,
                           const runtime::v1alpha2::ImageFsInfoRequest* request,
                           runtime::v1alpha2::ImageFsInfoResponse* response) override;

 private:
  service::ImageService& images_;
  const ServerOptions options_;
};

}  // namespace berth::cri
