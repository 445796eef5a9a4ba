// File: berth/metrics/grpc_metrics.h
//
// GrpcMetrics counts and times every call a gRPC server handles — the CRI ImageService
// (runtime.v1 and v1alpha2), berth.v1.Admin and containerd's Snapshots API — through a server
// interceptor, so no handler has to remember to:
//   berth_grpc_requests_total{service, method, code}
//   berth_grpc_request_duration_seconds{service, method}
// `service` is the full service name ("runtime.v1.ImageService"), `method` the RPC
// ("PullImage"), `code` the gRPC status code name ("OK", "NOT_FOUND"). Only methods the server
// registered reach an interceptor, so the labels stay bounded.
//
//   grpc::ServerBuilder builder;
//   builder.experimental().SetInterceptorCreators(grpc_metrics.InterceptorCreators());
//
// Thread safety: interceptors run on gRPC's threads; the counters are the registry's.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <memory>
#include <string_view>
#include <vector>

#include "berth/metrics/metrics.h"

namespace berth::metrics {

class GrpcMetrics {
 public:
  // Registers the two families in `registry`, which must outlive this.
  explicit GrpcMetrics(Registry& registry);

  // Factories for one ServerBuilder (each server needs its own set); this object must outlive
  // the servers built with them.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
  InterceptorCreators();

  // Records one call of `full_method` ("/runtime.v1.ImageService/PullImage") that ended with
  // `code` after `elapsed`. (What the interceptor calls; public for tests.)
  void CallDone(std::string_view full_method, grpc::StatusCode code,
                std::chrono::steady_clock::duration elapsed);

 private:
  CounterFamily& requests_;
  HistogramFamily& duration_;
};

// The canonical name of `code`: "OK", "CANCELLED", ..., "UNAUTHENTICATED".
std::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace berth::metrics
