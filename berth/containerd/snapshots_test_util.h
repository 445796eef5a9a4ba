// File: berth/containerd/snapshots_test_util.h
//
// Test-only: serves a SnapshotsService over a snapshotter on a unix socket and connects a
// SnapshotsClient (and the raw stub) to it, through a real gRPC channel. Include from *_test.cc.
#pragma once

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "berth/base/result.h"
#include "berth/containerd/snapshots_client.h"
#include "berth/containerd/snapshots_service.h"

namespace berth::containerd::testing {

class ServedSnapshots {
 public:
  // Serves `snapshotter` (and `cleaner`, and `layers` unless null) on `socket` (replaced if it
  // exists). They must outlive the returned object. kUnavailable when the server cannot listen.
  static Result<std::unique_ptr<ServedSnapshots>> Start(snapshot::Snapshotter& snapshotter,
                                                        snapshot::Cleaner& cleaner,
                                                        const std::filesystem::path& socket,
                                                        SnapshotsClientOptions options = {},
                                                        LayerSource* layers = nullptr) {
    std::unique_ptr<ServedSnapshots> served(new ServedSnapshots(snapshotter, cleaner, layers));
    ::unlink(socket.c_str());
    served->address_ = "unix://" + socket.string();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket.string(), grpc::InsecureServerCredentials());
    builder.RegisterService(&served->service_);
    served->server_ = builder.BuildAndStart();
    if (!served->server_) {
      return Fail(ErrorCode::kUnavailable, "cannot listen on " + socket.string());
    }
    BERTH_ASSIGN_OR_RETURN(served->client_, SnapshotsClient::Connect(served->address_, options));
    return served;
  }

  ~ServedSnapshots() {
    client_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  SnapshotsClient& client() { return *client_; }
  api::Snapshots::Stub& stub() { return client_->stub(); }
  const std::string& address() const { return address_; }

 private:
  ServedSnapshots(snapshot::Snapshotter& snapshotter, snapshot::Cleaner& cleaner,
                  LayerSource* layers)
      : service_(snapshotter, cleaner, layers) {}

  SnapshotsService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<SnapshotsClient> client_;
  std::string address_;
};

}  // namespace berth::containerd::testing
