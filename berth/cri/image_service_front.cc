#include "berth/cri/image_service_front.h"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "berth/base/log.h"
#include "berth/cri/auth_config.h"
#include "berth/cri/grpc_status.h"
#include "berth/cri/image_service_client.h"
#include "berth/cri/request_log.h"

namespace berth::cri {
namespace {

namespace v1 = runtime::v1;
namespace v1alpha2 = runtime::v1alpha2;

// Big enough for a ListImages of thousands of images (gRPC's default is 4 MiB).
constexpr int kMaxUpstreamMessageBytes = 64 << 20;

// Runs `call` on the upstream with a ClientContext that carries the incoming call's deadline and
// is cancelled with it. A failure keeps the upstream's code; its message names the upstream.
template <typename Call>
grpc::Status Forward(std::string_view endpoint, const grpc::ServerContext& context, Call call) {
  std::unique_ptr<grpc::ClientContext> upstream_context =
      grpc::ClientContext::FromServerContext(context);
  grpc::Status status = call(upstream_context.get());
  if (status.ok()) return status;
  Error error = FromGrpcStatus(status);
  if (error.message().empty()) {
    // Some refusals carry no text (UNIMPLEMENTED from a server without the service).
    error = Error(error.code(), fmt::format("{} without a message", ErrorCodeName(error.code())));
  }
  return ToGrpcStatus(
      std::move(error).WithContext(fmt::format("upstream image service {}", endpoint)));
}

// The credentials of one pull, held while the upstream pulls: registered on construction,
// dropped on destruction (every way out of the handler), each logged at debug level.
class HeldCredentials {
 public:
  HeldCredentials(registry::PullCredentials& credentials, std::string_view image,
                  registry::CriAuthConfig auth)
      : credentials_(credentials) {
    if (!HasCredentials(auth)) return;
    Result<std::string> key = registry::PullCredentials::ImageKey(image);
    if (!key) return;  // Not a reference: the upstream refuses the pull; nothing to hold.
    Result<registry::PullCredentials::Hold> hold = credentials.Register(*key, std::move(auth));
    if (!hold) return;
    hold_ = std::move(*hold);
    key_ = std::move(*key);
    log::Debug("cri.pull_credentials_held",
               {{"image", key_}, {"holders", credentials_.HoldersOf(key_)}});
  }

  ~HeldCredentials() {
    if (!hold_.held()) return;
    hold_.Release();
    log::Debug("cri.pull_credentials_dropped",
               {{"image", key_}, {"holders", credentials_.HoldersOf(key_)}});
  }

  HeldCredentials(const HeldCredentials&) = delete;
  HeldCredentials& operator=(const HeldCredentials&) = delete;

 private:
  registry::PullCredentials& credentials_;
  registry::PullCredentials::Hold hold_;
  std::string key_;
};

template <typename Stub, typename Request, typename Response>
grpc::Status FrontPull(std::string_view endpoint, Stub& upstream,
                       registry::PullCredentials& credentials, const grpc::ServerContext& context,
                       const Request& request, Response* response) {
  RequestLog log("PullImage", request.image().image());
  grpc::Status status;
  {
    HeldCredentials held(credentials, request.image().image(), ToCriAuthConfig(request.auth()));
    status = Forward(endpoint, context, [&](grpc::ClientContext* call) {
      return upstream.PullImage(call, request, response);
    });
  }
  return log.Done(std::move(status));
}

template <typename Stub, typename Request, typename Response>
grpc::Status FrontList(std::string_view endpoint, Stub& upstream,
                       const grpc::ServerContext& context, const Request& request,
                       Response* response) {
  RequestLog log("ListImages", request.filter().image().image());
  return log.Done(Forward(endpoint, context, [&](grpc::ClientContext* call) {
    return upstream.ListImages(call, request, response);
  }));
}

template <typename Stub, typename Request, typename Response>
grpc::Status FrontStatus(std::string_view endpoint, Stub& upstream,
                         const grpc::ServerContext& context, const Request& request,
                         Response* response) {
  RequestLog log("ImageStatus", request.image().image());
  return log.Done(Forward(endpoint, context, [&](grpc::ClientContext* call) {
    return upstream.ImageStatus(call, request, response);
  }));
}

template <typename Stub, typename Request, typename Response>
grpc::Status FrontRemove(std::string_view endpoint, Stub& upstream,
                         const grpc::ServerContext& context, const Request& request,
                         Response* response) {
  RequestLog log("RemoveImage", request.image().image());
  return log.Done(Forward(endpoint, context, [&](grpc::ClientContext* call) {
    return upstream.RemoveImage(call, request, response);
  }));
}

template <typename Stub, typename Request, typename Response>
grpc::Status FrontFsInfo(std::string_view endpoint, Stub& upstream,
                         const grpc::ServerContext& context, const Request& request,
                         Response* response) {
  RequestLog log("ImageFsInfo", "");
  return log.Done(Forward(endpoint, context, [&](grpc::ClientContext* call) {
    return upstream.ImageFsInfo(call, request, response);
  }));
}

}  // namespace

Result<Upstream> ConnectUpstream(std::string_view endpoint) {
  Result<std::filesystem::path> path = UnixSocketPath(endpoint);
  if (!path) {
    return Fail(std::move(path).error().WithContext("upstream_image_endpoint"));
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxUpstreamMessageBytes);
  return Upstream{.endpoint = std::string(endpoint),
                  .channel = grpc::CreateCustomChannel(
                      "unix:" + path->string(), grpc::InsecureChannelCredentials(), arguments)};
}

grpc::Status ImageServiceFrontV1::ListImages(grpc::ServerContext* context,
                                             const v1::ListImagesRequest* request,
                                             v1::ListImagesResponse* response) {
  return FrontList(endpoint_, *upstream_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1::ImageStatus(grpc::ServerContext* context,
                                              const v1::ImageStatusRequest* request,
                                              v1::ImageStatusResponse* response) {
  return FrontStatus(endpoint_, *upstream_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1::PullImage(grpc::ServerContext* context,
                                            const v1::PullImageRequest* request,
                                            v1::PullImageResponse* response) {
  return FrontPull(endpoint_, *upstream_, credentials_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1::RemoveImage(grpc::ServerContext* context,
                                              const v1::RemoveImageRequest* request,
                                              v1::RemoveImageResponse* response) {
  return FrontRemove(endpoint_, *upstream_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1::ImageFsInfo(grpc::ServerContext* context,
                                              const v1::ImageFsInfoRequest* request,
                                              v1::ImageFsInfoResponse* response) {
  return FrontFsInfo(endpoint_, *upstream_, *context, *request, response);
}

grpc::Status ImageServiceFrontV1alpha2::ListImages(grpc::ServerContext* context,
                                                   const v1alpha2::ListImagesRequest* request,
                                                   v1alpha2::ListImagesResponse* response) {
  return FrontList(endpoint_, *upstream_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1alpha2::ImageStatus(grpc::ServerContext* context,
                                                    const v1alpha2::ImageStatusRequest* request,
                                                    v1alpha2::ImageStatusResponse* response) {
  return FrontStatus(endpoint_, *upstream_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1alpha2::PullImage(grpc::ServerContext* context,
                                                  const v1alpha2::PullImageRequest* request,
                                                  v1alpha2::PullImageResponse* response) {
  return FrontPull(endpoint_, *upstream_, credentials_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1alpha2::RemoveImage(grpc::ServerContext* context,
                                                    const v1alpha2::RemoveImageRequest* request,
                                                    v1alpha2::RemoveImageResponse* response) {
  return FrontRemove(endpoint_, *upstream_, *context, *request, response);
}
grpc::Status ImageServiceFrontV1alpha2::ImageFsInfo(grpc::ServerContext* context,
                                                    const v1alpha2::ImageFsInfoRequest* request,
                                                    v1alpha2::ImageFsInfoResponse* response) {
  return FrontFsInfo(endpoint_, *upstream_, *context, *request, response);
}

}  // namespace berth::cri
