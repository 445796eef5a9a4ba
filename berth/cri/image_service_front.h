// File: berth/cri/image_service_front.h
//
// Front mode (config `upstream_image_endpoint`): berth's CRI ImageService in front of the node
// runtime's own (containerd's CRI socket). kubelet's --image-service-endpoint points at berthd,
// which forwards every image call to the upstream as it came and returns the upstream's answer as
// it came, so the runtime's image store stays the truth for kubelet and the runtime:
//
//   PullImage    → upstream PullImage, AuthConfig included (containerd fetches the manifest and
//                  config itself). While the call runs, its AuthConfig is also held in
//                  registry::PullCredentials under the image's reference: registered before the
//                  call is forwarded, dropped as soon as the upstream has answered, whatever the
//                  answer — for berth's own fetches of that image's layers (the remote-snapshot
//                  fetch of berthd's Snapshots API). An AuthConfig without any credential (an
//                  anonymous pull) holds nothing; an image that is not a reference is forwarded
//                  without holding anything (the upstream refuses it).
//   ListImages, ImageStatus (verbose info as the upstream writes it), RemoveImage,
//   ImageFsInfo  → upstream, request and response unchanged.
//
// Calls. The upstream call carries the incoming call's deadline and is cancelled when the
// incoming call is (grpc::ClientContext::FromServerContext). A failed upstream call returns the
// upstream's status code with its message prefixed "upstream image service <endpoint>: " (through
// FromGrpcStatus and ToGrpcStatus, so it is redacted and bounded like every status berth sends).
// An upstream that does not answer (not started, wrong socket, restarting) is UNAVAILABLE naming
// the endpoint; the channel reconnects by itself, so calls work again once the upstream is back.
//
// API versions. runtime.v1 is forwarded to the upstream's runtime.v1 and runtime.v1alpha2 to its
// runtime.v1alpha2 (containerd 1.6 and 1.7 serve both; containerd 2.x only runtime.v1, where a
// v1alpha2 call comes back as the upstream's UNIMPLEMENTED, prefixed as above).
//
// Logging. One `cri.request` line per call (request_log.h), as in standalone mode. At debug level,
// `cri.pull_credentials_held image=<normalized reference> holders=<n>` once a pull's credentials
// are held and `cri.pull_credentials_dropped image=<…> holders=<n>` once they are dropped (n
// counts the pulls of that image still holding credentials); never a credential.
//
// Thread safety: gRPC calls the handlers from many threads at once; the channel, the stubs and
// PullCredentials are thread-safe. `credentials` must outlive both services.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/registry/pull_credentials.h"
#include "proto/runtime/v1/api.grpc.pb.h"
#include "proto/runtime/v1alpha2/api.grpc.pb.h"

namespace berth::cri {

// The upstream CRI ImageService: its endpoint, as configured (for messages), and a channel to it.
struct Upstream {
  std::string endpoint;
  std::shared_ptr<grpc::Channel> channel;
};

// A channel to `endpoint` ("unix:///run/containerd/containerd.sock"). Connects lazily: an
// upstream that is not up yet shows as UNAVAILABLE on the first call, not here.
// kInvalidArgument for anything but unix:// and an absolute socket path.
Result<Upstream> ConnectUpstream(std::string_view endpoint);

class ImageServiceFrontV1 final : public runtime::v1::ImageService::Service {
 public:
  ImageServiceFrontV1(const Upstream& upstream, registry::PullCredentials& credentials)
      : endpoint_(upstream.endpoint),
        upstream_(runtime::v1::ImageService::NewStub(upstream.channel)),
        credentials_(credentials) {}

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
  const std::string endpoint_;
  const std::unique_ptr<runtime::v1::ImageService::Stub> upstream_;
  registry::PullCredentials& credentials_;
};

class ImageServiceFrontV1alpha2 final : public runtime::v1alpha2::ImageService::Service {
 public:
  ImageServiceFrontV1alpha2(const Upstream& upstream, registry::PullCredentials& credentials)
      : endpoint_(upstream.endpoint),
        upstream_(runtime::v1alpha2::ImageService::NewStub(upstream.channel)),
        credentials_(credentials) {}

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
  const std::string endpoint_;
  const std::unique_ptr<runtime::v1alpha2::ImageService::Stub> upstream_;
  registry::PullCredentials& credentials_;
};

}  // namespace berth::cri
