// File: berth/cri/admin_server.h
//
// berth's own gRPC service (proto/berth/v1/admin.proto, berth.v1.Admin), served by berthd on the
// CRI socket beside the ImageService: what CRI has no call for.
//
//   PullProgress   → the image service's PullProgressBoard (service/pull_progress.h): the first
//                    update is the board as it is (only the pulls followed), then one update per
//                    change until the followed pulls end. With a reference (normalized) the
//                    stream follows the running pulls of it, or the next one to start; without,
//                    every pull running or started later, until none runs. Ends early when the
//                    client cancels (CANCELLED) or the server shuts down.
//   CollectGarbage → ImageService::CollectGarbage(dry_run)
//   Check          → ImageService::Check({repair, verify})
//
// Errors go through ToGrpcStatus(), but for PullProgress's CANCELLED when the client cancels or
// goes away. Every call is logged once as `admin.request`.
//
// Thread safety: handlers run on gRPC's threads at once; they only call ImageService, which is
// thread-safe. `images` must outlive the service.
#pragma once

#include "berth/service/image_service.h"
#include "proto/berth/v1/admin.grpc.pb.h"

namespace berth::cri {

class AdminService final : public berth::v1::Admin::Service {
 public:
  explicit AdminService(service::ImageService& images) : images_(images) {}

  grpc::Status PullProgress(grpc::ServerContext* context,
                            const berth::v1::PullProgressRequest* request,
                            grpc::ServerWriter<berth::v1::PullProgressUpdate>* writer) override;
  grpc::Status CollectGarbage(grpc::ServerContext* context,
                              const berth::v1::CollectGarbageRequest* request,
                              berth::v1::CollectGarbageResponse* response) override;
  grpc::Status Check(grpc::ServerContext* context, const berth::v1::CheckRequest* request,
                     berth::v1::CheckResponse* response) override;

 private:
  service::ImageService& images_;
};

// The wire forms, shared with the client (admin_client.h).
void ToWire(const gc::CollectReport& report, berth::v1::CollectGarbageResponse* wire);
gc::CollectReport FromWire(const berth::v1::CollectGarbageResponse& wire);
void ToWire(const service::PullStatus& pull, berth::v1::PullStatus* wire);
service::PullStatus FromWire(const berth::v1::PullStatus& wire);

}  // namespace berth::cri
