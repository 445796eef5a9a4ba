#include "berth/cri/image_service_server.h"

#include <chrono>
#include <string>

#include "berth/cri/auth_config.h"
#include "berth/cri/call_cancellation.h"
#include "berth/cri/full_disk.h"
#include "berth/cri/grpc_status.h"
#include "berth/cri/request_log.h"

namespace berth::cri {
namespace {

template <typename ImageMessage>
void FillImage(const service::Image& image, ImageMessage& out) {
  out.set_id(image.id.ToString());
  for (const std::string& tag : image.repo_tags) out.add_repo_tags(tag);
  for (const std::string& digest : image.repo_digests) out.add_repo_digests(digest);
  out.set_size(static_cast<uint64_t>(image.size));
  if (image.user.uid) {
    out.mutable_uid()->set_value(*image.user.uid);
  } else {
    out.set_username(image.user.username);
  }
  out.mutable_spec()->set_image(image.id.ToString());
  out.set_pinned(image.pinned);
}

template <typename Request, typename Response>
grpc::Status DoPull(service::ImageService& images, const ServerOptions& options,
                    grpc::ServerContext& context, const Request& request, Response& response) {
  RequestLog log("PullImage", request.image().image());
  CallCancellation cancellation(context);
  Result<service::PullResult> pulled =
      images.Pull({.image = request.image().image(), .auth = ToCriAuthConfig(request.auth())},
                  cancellation.token());
  if (!pulled) {
    return log.Done(ToGrpcStatus(ExplainFullDisk(pulled.error(), options.data_directories)));
  }
  response.set_image_ref(pulled->image_id.ToString());
  return log.Done(grpc::Status::OK);
}

template <typename Request, typename Response>
grpc::Status DoList(service::ImageService& images, const Request& request, Response& response) {
  const std::string& filter = request.filter().image().image();
  RequestLog log("ListImages", filter);
  Result<std::vector<service::Image>> listed = images.List(filter);
  if (!listed) return log.Done(ToGrpcStatus(listed.error()));
  for (const service::Image& image : *listed) FillImage(image, *response.add_images());
  return log.Done(grpc::Status::OK);
}

template <typename Request, typename Response>
grpc::Status DoStatus(service::ImageService& images, const Request& request, Response& response) {
  RequestLog log("ImageStatus", request.image().image());
  Result<std::optional<service::Image>> status = images.Status(request.image().image());
  if (!status) return log.Done(ToGrpcStatus(status.error()));
  if (!*status) return log.Done(grpc::Status::OK);  // not found: an empty response
  FillImage(**status, *response.mutable_image());
  if (request.verbose()) (*response.mutable_info())["info"] = service::VerboseInfo(**status);
  return log.Done(grpc::Status::OK);
}

// Whether the client asked to remove pinned images too (kRemovePinnedMetadata).
service::RemovePinned RemovePinnedFor(const grpc::ServerContext& context) {
  auto [begin, end] = context.client_metadata().equal_range(
      grpc::string_ref(kRemovePinnedMetadata.data(), kRemovePinnedMetadata.size()));
  for (auto it = begin; it != end; ++it) {
    if (std::string_view(it->second.data(), it->second.size()) == "true") {
      return service::RemovePinned::kAllow;
    }
  }
  return service::RemovePinned::kRefuse;
}

template <typename Request>
grpc::Status DoRemove(service::ImageService& images, const grpc::ServerContext& context,
                      const Request& request) {
  RequestLog log("RemoveImage", request.image().image());
  Result<void> removed = images.Remove(request.image().image(), RemovePinnedFor(context));
  if (!removed) return log.Done(ToGrpcStatus(removed.error()));
  return log.Done(grpc::Status::OK);
}

template <typename Response>
grpc::Status DoFsInfo(service::ImageService& images, Response& response) {
  RequestLog log("ImageFsInfo", "");
  Result<std::vector<service::FilesystemUsage>> filesystems = images.FsInfo();
  if (!filesystems) return log.Done(ToGrpcStatus(filesystems.error()));
  for (const service::FilesystemUsage& usage : *filesystems) {
    auto* out = response.add_image_filesystems();
    out->set_timestamp(
        std::chrono::duration_cast<std::chrono::nanoseconds>(usage.timestamp.time_since_epoch())
            .count());
    out->mutable_fs_id()->set_mountpoint(usage.mountpoint);
    out->mutable_used_bytes()->set_value(usage.used_bytes);
    out->mutable_inodes_used()->set_value(usage.inodes_used);
    // Writable layers are active snapshots under the same snapshot root (as with CRI-O's
    // unsplit storage, the same figures): kubelet then sees image and container filesystems
    // as one. v1alpha2 has no container_filesystems.
    if constexpr (requires { response.add_container_filesystems(); }) {
      if (usage.holds_writable_layers) *response.add_container_filesystems() = *out;
    }
  }
  return log.Done(grpc::Status::OK);
}

}  // namespace

grpc::Status ImageServiceV1::ListImages(grpc::ServerContext*,
                                        const runtime::v1::ListImagesRequest* request,
                                        runtime::v1::ListImagesResponse* response) {
  return DoList(images_, *request, *response);
}
grpc::Status ImageServiceV1::ImageStatus(grpc::ServerContext*,
                                         const runtime::v1::ImageStatusRequest* request,
                                         runtime::v1::ImageStatusResponse* response) {
  return DoStatus(images_, *request, *response);
}
grpc::Status ImageServiceV1::PullImage(grpc::ServerContext* context,
                                       const runtime::v1::PullImageRequest* request,
                                       runtime::v1::PullImageResponse* response) {
  return DoPull(images_, options_, *context, *request, *response);
}
grpc::Status ImageServiceV1::RemoveImage(grpc::ServerContext* context,
                                         const runtime::v1::RemoveImageRequest* request,
                                         runtime::v1::RemoveImageResponse*) {
  return DoRemove(images_, *context, *request);
}
grpc::Status ImageServiceV1::ImageFsInfo(grpc::ServerContext*,
                                         const runtime::v1::ImageFsInfoRequest*,
                                         runtime::v1::ImageFsInfoResponse* response) {
  return DoFsInfo(images_, *response);
}

grpc::Status ImageServiceV1alpha2::ListImages(grpc::ServerContext*,
                                              const runtime::v1alpha2::ListImagesRequest* request,
                                              runtime::v1alpha2::ListImagesResponse* response) {
  return DoList(images_, *request, *response);
}
grpc::Status ImageServiceV1alpha2::ImageStatus(grpc::ServerContext*,
                                               const runtime::v1alpha2::ImageStatusRequest* request,
                                               runtime::v1alpha2::ImageStatusResponse* response) {
  return DoStatus(images_, *request, *response);
}
grpc::Status ImageServiceV1alpha2::PullImage(grpc::ServerContext* context,
                                             const runtime::v1alpha2::PullImageRequest* request,
                                             runtime::v1alpha2::PullImageResponse* response) {
  return DoPull(images_, options_, *context, *request, *response);
}
grpc::Status ImageServiceV1alpha2::RemoveImage(grpc::ServerContext* context,
                                               const runtime::v1alpha2::RemoveImageRequest* request,
                                               runtime::v1alpha2::RemoveImageResponse*) {
  return DoRemove(images_, *context, *request);
}
grpc::Status ImageServiceV1alpha2::ImageFsInfo(grpc::ServerContext*,
                                               const runtime::v1alpha2::ImageFsInfoRequest*,
                                               runtime::v1alpha2::ImageFsInfoResponse* response) {
  return DoFsInfo(images_, *response);
}

}  // namespace berth::cri
