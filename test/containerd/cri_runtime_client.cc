#include "test/containerd/cri_runtime_client.h"

#include <fmt/format.h>
#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/impl/rpc_method.h>

namespace berth::containerd_test {

std::unique_ptr<CriRuntimeClient> CriRuntimeClient::Connect(const std::filesystem::path& socket,
                                                            std::chrono::milliseconds timeout) {
  auto channel =
      grpc::CreateChannel("unix://" + socket.string(), grpc::InsecureChannelCredentials());
  return std::unique_ptr<CriRuntimeClient>(new CriRuntimeClient(std::move(channel), timeout));
}

template <typename Response, typename Request>
Result<Response> CriRuntimeClient::Call(const char* method, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  const grpc::internal::RpcMethod rpc(method, grpc::internal::RpcMethod::NORMAL_RPC, channel_);
  Response response;
  grpc::Status status = grpc::internal::BlockingUnaryCall<Request, Response>(
      channel_.get(), rpc, &context, request, &response);
  if (!status.ok()) {
    return Fail(static_cast<ErrorCode>(status.error_code()),
                fmt::format("CRI {}: {}", method, status.error_message()));
  }
  return response;
}

#define BERTH_CRI_CALL(service, name)                                                     \
  Result<cri::name##Response> CriRuntimeClient::name(const cri::name##Request& request) { \
    return Call<cri::name##Response>("/runtime.v1." #service "/" #name, request);         \
  }

BERTH_CRI_CALL(ImageService, PullImage)
BERTH_CRI_CALL(RuntimeService, RunPodSandbox)
BERTH_CRI_CALL(RuntimeService, PodSandboxStatus)
BERTH_CRI_CALL(RuntimeService, StopPodSandbox)
BERTH_CRI_CALL(RuntimeService, RemovePodSandbox)
BERTH_CRI_CALL(RuntimeService, CreateContainer)
BERTH_CRI_CALL(RuntimeService, StartContainer)
BERTH_CRI_CALL(RuntimeService, ContainerStatus)
BERTH_CRI_CALL(RuntimeService, StopContainer)
BERTH_CRI_CALL(RuntimeService, RemoveContainer)

#undef BERTH_CRI_CALL

}  // namespace berth::containerd_test
