#include "berth/metrics/grpc_metrics.h"

#include <array>

namespace berth::metrics {
namespace {

using grpc::experimental::InterceptionHookPoints;

// One per call: the clock starts when gRPC creates it (the call arrived) and stops when the
// status is sent.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcMetrics& metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), method_(info->method()), started_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_.CallDone(method_, methods->GetSendStatus().error_code(),
                        std::chrono::steady_clock::now() - started_);
    }
    methods->Proceed();
  }

 private:
  GrpcMetrics& metrics_;
  const std::string_view method_;  // gRPC keeps the method's name for the server's life
  const std::chrono::steady_clock::time_point started_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcMetrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  GrpcMetrics& metrics_;
};

// 1 ms to about 8 minutes: a status call to a pull of a large image.
std::vector<double> CallBuckets() { return ExponentialBuckets(0.001, 4, 10); }

}  // namespace

std::string_view GrpcCodeName(grpc::StatusCode code) {
  static constexpr std::array<std::string_view, 17> kNames = {"OK",
                                                              "CANCELLED",
                                                              "UNKNOWN",
                                                              "INVALID_ARGUMENT",
                                                              "DEADLINE_EXCEEDED",
                                                              "NOT_FOUND",
                                                              "ALREADY_EXISTS",
                                                              "PERMISSION_DENIED",
                                                              "RESOURCE_EXHAUSTED",
                                                              "FAILED_PRECONDITION",
                                                              "ABORTED",
                                                              "OUT_OF_RANGE",
                                                              "UNIMPLEMENTED",
                                                              "INTERNAL",
                                                              "UNAVAILABLE",
                                                              "DATA_LOSS",
                                                              "UNAUTHENTICATED"};
  const auto index = static_cast<size_t>(code);
  return index < kNames.size() ? kNames[index] : "UNKNOWN";
}

GrpcMetrics::GrpcMetrics(Registry& registry)
    : requests_(registry.AddCounter("berth_grpc_requests_total",
                                    "gRPC calls handled (CRI ImageService, berth.v1.Admin, "
                                    "containerd's Snapshots API) by service, method and status "
                                    "code.",
                                    {"service", "method", "code"})),
      duration_(registry.AddHistogram("berth_grpc_request_duration_seconds",
                                      "Time from a gRPC call's arrival to its status.",
                                      {"service", "method"}, CallBuckets())) {}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
GrpcMetrics::InterceptorCreators() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<MetricsInterceptorFactory>(*this));
  return creators;
}

void GrpcMetrics::CallDone(std::string_view full_method, grpc::StatusCode code,
                           std::chrono::steady_clock::duration elapsed) {
  // "/package.Service/Method"
  std::string_view path = full_method;
  if (path.starts_with('/')) path.remove_prefix(1);
  const size_t slash = path.find('/');
  const std::string_view service = slash == std::string_view::npos ? "" : path.substr(0, slash);
  const std::string_view method = slash == std::string_view::npos ? path : path.substr(slash + 1);
  requests_.WithLabels({service, method, GrpcCodeName(code)}).Increment();
  duration_.WithLabels({service, method}).Observe(std::chrono::duration<double>(elapsed).count());
}

}  // namespace berth::metrics
