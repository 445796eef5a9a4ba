#include "berth/cri/image_service_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "berth/base/unique_fd.h"
#include "berth/cri/grpc_status.h"
#include "berth/cri/image_service_server.h"

namespace berth::cri {
namespace {

namespace v1 = ::runtime::v1;

Result<service::Image> FromWire(const v1::Image& wire) {
  Result<Digest> id = Digest::Parse(wire.id());
  if (!id) {
    return Fail(ErrorCode::kInternal,
                fmt::format("the image service returned a malformed image ID \"{}\"", wire.id()));
  }
  service::Image image{.id = *id,
                       .repo_tags = {wire.repo_tags().begin(), wire.repo_tags().end()},
                       .repo_digests = {wire.repo_digests().begin(), wire.repo_digests().end()},
                       .size = static_cast<int64_t>(wire.size()),
                       .pinned = wire.pinned()};
  if (wire.has_uid()) {
    image.user.uid = wire.uid().value();
  } else {
    image.user.username = wire.username();
  }
  return image;
}

// Reads VerboseInfo()'s JSON back into the image: chain ID, snapshotter, config.
void ApplyVerboseInfo(std::string_view text, service::Image& image) {
  nlohmann::json info = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (info.is_discarded() || !info.is_object()) return;
  if (auto it = info.find("chainID"); it != info.end() && it->is_string()) {
    image.chain_id = it->get<std::string>();
  }
  if (auto it = info.find("snapshotter"); it != info.end() && it->is_string()) {
    image.snapshotter = it->get<std::string>();
  }
  if (auto it = info.find("imageSpec"); it != info.end() && it->is_object()) {
    image.config_json = it->dump();
  }
}

// A failed call as an Error: the server's code and message, and where it was sent.
Result<void> Check(const grpc::Status& status, std::string_view method, std::string_view address) {
  if (status.ok()) return Ok();
  return Fail(FromGrpcStatus(status).WithContext(fmt::format("{} via {}", method, address)));
}

}  // namespace

Result<std::filesystem::path> UnixSocketPath(std::string_view address) {
  constexpr std::string_view kScheme = "unix://";
  if (!address.starts_with(kScheme) || address.size() == kScheme.size() ||
      address[kScheme.size()] != '/') {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("address {} must be unix:// followed by an absolute path", address));
  }
  std::filesystem::path path(address.substr(kScheme.size()));
  if (path.string().size() >= sizeof(sockaddr_un::sun_path)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("socket path {} is too long", path.string()));
  }
  return path;
}

Result<std::optional<pid_t>> ProbeListener(std::string_view address) {
  BERTH_ASSIGN_OR_RETURN(std::filesystem::path path, UnixSocketPath(address));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Fail(ErrnoError(errno, "socket"));
  sockaddr_un socket_address{};
  socket_address.sun_family = AF_UNIX;
  std::strncpy(socket_address.sun_path, path.c_str(), sizeof(socket_address.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&socket_address), sizeof(socket_address)) !=
      0) {
    // No socket, or a socket file nobody listens on (a daemon that died).
    if (errno == ENOENT || errno == ECONNREFUSED || errno == ENOTDIR) {
      return std::optional<pid_t>();
    }
    return Fail(ErrnoError(errno, fmt::format("connect to {}", path.string())));
  }
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return std::optional<pid_t>(0);
  }
  return std::optional<pid_t>(credentials.pid);
}

Result<std::unique_ptr<ImageServiceClient>> ImageServiceClient::Connect(
    std::string_view address, std::chrono::seconds timeout) {
  BERTH_ASSIGN_OR_RETURN(std::filesystem::path path, UnixSocketPath(address));
  auto channel = grpc::CreateChannel("unix:" + path.string(), grpc::InsecureChannelCredentials());
  return std::unique_ptr<ImageServiceClient>(
      new ImageServiceClient(std::string(address), timeout, v1::ImageService::NewStub(channel)));
}

std::unique_ptr<grpc::ClientContext> ImageServiceClient::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout_);
  return context;
}

Result<service::PullResult> ImageServiceClient::Pull(const service::PullRequest& request) {
  if (request.platform) {
    return Fail(ErrorCode::kInvalidArgument,
                "CRI PullImage cannot ask for a platform; the image service pulls its own");
  }
  v1::PullImageRequest wire;
  wire.mutable_image()->set_image(request.image);
  v1::AuthConfig& auth = *wire.mutable_auth();
  auth.set_username(request.auth.username);
  auth.set_password(request.auth.password.reveal());
  auth.set_auth(request.auth.auth.reveal());
  auth.set_server_address(request.auth.server_address);
  auth.set_identity_token(request.auth.identity_token.reveal());
  auth.set_registry_token(request.auth.registry_token.reveal());
  v1::PullImageResponse response;
  auto context = std::make_unique<grpc::ClientContext>();  // no deadline: pulls take their time
  BERTH_RETURN_IF_ERROR(
      Check(stub_->PullImage(context.get(), wire, &response), "PullImage", address_));
  Result<Digest> id = Digest::Parse(response.image_ref());
  if (!id) {
    return Fail(ErrorCode::kInternal, fmt::format("PullImage via {} returned image_ref \"{}\"",
                                                  address_, response.image_ref()));
  }
  return service::PullResult{.image_id = *id, .reference = request.image};
}

Result<std::vector<service::Image>> ImageServiceClient::List(std::string_view filter) {
  v1::ListImagesRequest wire;
  if (!filter.empty()) wire.mutable_filter()->mutable_image()->set_image(std::string(filter));
  v1::ListImagesResponse response;
  auto context = NewContext();
  BERTH_RETURN_IF_ERROR(
      Check(stub_->ListImages(context.get(), wire, &response), "ListImages", address_));
  std::vector<service::Image> images;
  for (const v1::Image& image : response.images()) {
    BERTH_ASSIGN_OR_RETURN(service::Image converted, FromWire(image));
    images.push_back(std::move(converted));
  }
  return images;
}

Result<std::optional<service::Image>> ImageServiceClient::Status(std::string_view ref_or_id) {
  v1::ImageStatusRequest wire;
  wire.mutable_image()->set_image(std::string(ref_or_id));
  wire.set_verbose(true);
  v1::ImageStatusResponse response;
  auto context = NewContext();
  BERTH_RETURN_IF_ERROR(
      Check(stub_->ImageStatus(context.get(), wire, &response), "ImageStatus", address_));
  if (!response.has_image() || response.image().id().empty()) {
    return std::optional<service::Image>();
  }
  BERTH_ASSIGN_OR_RETURN(service::Image image, FromWire(response.image()));
  if (auto it = response.info().find("info"); it != response.info().end()) {
    ApplyVerboseInfo(it->second, image);
  }
  return std::optional<service::Image>(std::move(image));
}

Result<void> ImageServiceClient::Remove(std::string_view ref_or_id, service::RemovePinned pinned) {
  v1::RemoveImageRequest wire;
  wire.mutable_image()->set_image(std::string(ref_or_id));
  v1::RemoveImageResponse response;
  auto context = NewContext();
  if (pinned == service::RemovePinned::kAllow) {
    context->AddMetadata(std::string(kRemovePinnedMetadata), "true");
  }
  BERTH_RETURN_IF_ERROR(
      Check(stub_->RemoveImage(context.get(), wire, &response), "RemoveImage", address_));
  return Ok();
}

Result<std::vector<service::FilesystemUsage>> ImageServiceClient::FsInfo() {
  v1::ImageFsInfoResponse response;
  auto context = NewContext();
  BERTH_RETURN_IF_ERROR(
      Check(stub_->ImageFsInfo(context.get(), v1::ImageFsInfoRequest(), &response), "ImageFsInfo",
            address_));
  std::vector<service::FilesystemUsage> filesystems;
  for (const v1::FilesystemUsage& usage : response.image_filesystems()) {
    const std::string& mountpoint = usage.fs_id().mountpoint();
    bool writable_layers = std::any_of(
        response.container_filesystems().begin(), response.container_filesystems().end(),
        [&](const v1::FilesystemUsage& other) { return other.fs_id().mountpoint() == mountpoint; });
    filesystems.push_back({.timestamp = std::chrono::system_clock::time_point(
                               std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                   std::chrono::nanoseconds(usage.timestamp()))),
                           .mountpoint = mountpoint,
                           .used_bytes = usage.used_bytes().value(),
                           .inodes_used = usage.inodes_used().value(),
                           .holds_writable_layers = writable_layers});
  }
  return filesystems;
}

}  // namespace berth::cri
