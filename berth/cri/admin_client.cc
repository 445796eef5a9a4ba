#include "berth/cri/admin_client.h"

#include <fmt/format.h>

#include "berth/cri/admin_server.h"
#include "berth/cri/grpc_status.h"
#include "berth/cri/image_service_client.h"

namespace berth::cri {
namespace {

namespace wire = berth::v1;

// A failed call as an Error: the server's code and message, and where it was sent.
Result<void> CheckCall(const grpc::Status& status, std::string_view method,
                       std::string_view address) {
  if (status.ok()) return Ok();
  return Fail(FromGrpcStatus(status).WithContext(fmt::format("{} via {}", method, address)));
}

}  // namespace

Result<std::unique_ptr<AdminClient>> AdminClient::Connect(std::string_view address,
                                                          std::chrono::seconds timeout) {
  BERTH_ASSIGN_OR_RETURN(std::filesystem::path path, UnixSocketPath(address));
  auto channel = grpc::CreateChannel("unix:" + path.string(), grpc::InsecureChannelCredentials());
  return std::unique_ptr<AdminClient>(
      new AdminClient(std::string(address), timeout, wire::Admin::NewStub(channel)));
}

Result<void> AdminClient::WatchPullProgress(
    std::string_view reference,
    const std::function<void(const std::vector<service::PullStatus>&)>& on_update,
    grpc::ClientContext& context) {
  wire::PullProgressRequest request;
  request.set_reference(std::string(reference));
  std::unique_ptr<grpc::ClientReader<wire::PullProgressUpdate>> reader =
      stub_->PullProgress(&context, request);
  wire::PullProgressUpdate update;
  while (reader->Read(&update)) {
    std::vector<service::PullStatus> pulls;
    for (const wire::PullStatus& pull : update.pulls()) pulls.push_back(FromWire(pull));
    on_update(pulls);
  }
  return CheckCall(reader->Finish(), "PullProgress", address_);
}

Result<gc::CollectReport> AdminClient::CollectGarbage(bool dry_run) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  wire::CollectGarbageRequest request;
  request.set_dry_run(dry_run);
  wire::CollectGarbageResponse response;
  BERTH_RETURN_IF_ERROR(
      CheckCall(stub_->CollectGarbage(&context, request, &response), "CollectGarbage", address_));
  return FromWire(response);
}

Result<service::CheckReport> AdminClient::Check(const service::CheckOptions& options) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  wire::CheckRequest request;
  request.set_repair(options.repair);
  request.set_verify(options.verify_digests);
  wire::CheckResponse response;
  BERTH_RETURN_IF_ERROR(CheckCall(stub_->Check(&context, request, &response), "Check", address_));
  service::CheckReport report;
  report.problems.assign(response.problems().begin(), response.problems().end());
  report.garbage = FromWire(response.garbage());
  report.blobs_verified = response.blobs_verified();
  report.repaired = response.repaired();
  return report;
}

}  // namespace berth::cri
