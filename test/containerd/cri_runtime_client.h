// File: test/containerd/cri_runtime_client.h
//
// CriRuntimeClient calls containerd's CRI (runtime.v1) on its unix socket: the RuntimeService
// calls a pod's life needs (RunPodSandbox, CreateContainer, StartContainer, ContainerStatus,
// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox, PodSandboxStatus) and
// ImageService.PullImage, with the test-only messages of cri_runtime.proto. Each call has its
// own deadline (`timeout`) and blocks until the answer.
//
//   auto cri = CriRuntimeClient::Connect(containerd->address());
//   ASSERT_OK_AND_ASSIGN(cri::RunPodSandboxResponse pod, cri->RunPodSandbox(request));
//
// A failed call returns the gRPC status as an Error with the same code (berth's codes are
// gRPC's), its message naming the method. Thread safety: as grpc::Channel, safe from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string_view>

#include "berth/base/result.h"
#include "test/containerd/cri_runtime.pb.h"

namespace berth::containerd_test {

namespace cri = ::berth::testing::cri;

class CriRuntimeClient {
 public:
  // A client of the CRI served on the unix socket `socket` (containerd's gRPC address). Does
  // not connect until the first call.
  static std::unique_ptr<CriRuntimeClient> Connect(
      const std::filesystem::path& socket,
      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  Result<cri::PullImageResponse> PullImage(const cri::PullImageRequest& request);
  Result<cri::RunPodSandboxResponse> RunPodSandbox(const cri::RunPodSandboxRequest& request);
  Result<cri::PodSandboxStatusResponse> PodSandboxStatus(
      const cri::PodSandboxStatusRequest& request);
  Result<cri::StopPodSandboxResponse> StopPodSandbox(const cri::StopPodSandboxRequest& request);
  Result<cri::RemovePodSandboxResponse> RemovePodSandbox(
      const cri::RemovePodSandboxRequest& request);
  Result<cri::CreateContainerResponse> CreateContainer(const cri::CreateContainerRequest& request);
  Result<cri::StartContainerResponse> StartContainer(const cri::StartContainerRequest& request);
  Result<cri::ContainerStatusResponse> ContainerStatus(const cri::ContainerStatusRequest& request);
  Result<cri::StopContainerResponse> StopContainer(const cri::StopContainerRequest& request);
  Result<cri::RemoveContainerResponse> RemoveContainer(const cri::RemoveContainerRequest& request);

 private:
  CriRuntimeClient(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout)
      : channel_(std::move(channel)), timeout_(timeout) {}

  // One unary call of `method` ("/runtime.v1.RuntimeService/RunPodSandbox").
  template <typename Response, typename Request>
  Result<Response> Call(const char* method, const Request& request);

  std::shared_ptr<grpc::Channel> channel_;
  std::chrono::milliseconds timeout_;
};

}  // namespace berth::containerd_test
