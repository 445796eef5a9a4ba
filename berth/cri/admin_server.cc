#include "berth/cri/admin_server.h"

#include <chrono>
#include <set>
#include <string>

#include "berth/base/log.h"
#include "berth/cri/grpc_status.h"
#include "berth/reference/reference.h"

namespace berth::cri {
namespace {

namespace wire = berth::v1;

// How often a waiting stream looks at the client's cancellation.
constexpr std::chrono::milliseconds kCancelPoll(200);

void LogRequest(std::string_view method, std::chrono::steady_clock::time_point started,
                const grpc::Status& status) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  log::Info("admin.request", {{"method", std::string(method)},
                              {"ms", std::to_string(ms)},
                              {"code", std::to_string(static_cast<int>(status.error_code()))}});
}

wire::BlobState ToWire(service::BlobState state) {
  switch (state) {
    case service::BlobState::kWaiting:
      return wire::BLOB_STATE_WAITING;
    case service::BlobState::kDownloading:
      return wire::BLOB_STATE_DOWNLOADING;
    case service::BlobState::kUnpacking:
      return wire::BLOB_STATE_UNPACKING;
    case service::BlobState::kCommitted:
      return wire::BLOB_STATE_COMMITTED;
    case service::BlobState::kCached:
      return wire::BLOB_STATE_CACHED;
  }
  return wire::BLOB_STATE_UNSPECIFIED;
}

service::BlobState FromWire(wire::BlobState state) {
  switch (state) {
    case wire::BLOB_STATE_DOWNLOADING:
      return service::BlobState::kDownloading;
    case wire::BLOB_STATE_UNPACKING:
      return service::BlobState::kUnpacking;
    case wire::BLOB_STATE_COMMITTED:
      return service::BlobState::kCommitted;
    case wire::BLOB_STATE_CACHED:
      return service::BlobState::kCached;
    default:
      return service::BlobState::kWaiting;
  }
}

void ToWire(const gc::Freed& freed, wire::Freed* out) {
  out->set_count(freed.count);
  out->set_bytes(freed.bytes);
}

gc::Freed FromWire(const wire::Freed& freed) {
  return {.count = freed.count(), .bytes = freed.bytes()};
}

}  // namespace

void ToWire(const gc::CollectReport& report, wire::CollectGarbageResponse* out) {
  ToWire(report.blobs, out->mutable_blobs());
  ToWire(report.snapshots, out->mutable_snapshots());
  ToWire(report.ingests, out->mutable_ingests());
  ToWire(report.orphan_directories, out->mutable_orphan_directories());
  out->set_expired_leases(report.expired_leases);
  for (const std::string& line : report.removed) out->add_removed(line);
  for (const std::string& line : report.warnings) out->add_warnings(line);
}

gc::CollectReport FromWire(const wire::CollectGarbageResponse& in) {
  gc::CollectReport report;
  report.blobs = FromWire(in.blobs());
  report.snapshots = FromWire(in.snapshots());
  report.ingests = FromWire(in.ingests());
  report.orphan_directories = FromWire(in.orphan_directories());
  report.expired_leases = in.expired_leases();
  report.removed.assign(in.removed().begin(), in.removed().end());
  report.warnings.assign(in.warnings().begin(), in.warnings().end());
  return report;
}

void ToWire(const service::PullStatus& pull, wire::PullStatus* out) {
  out->set_id(pull.id);
  out->set_reference(pull.reference);
  out->set_state(pull.state == service::PullState::kRunning ? wire::PULL_STATE_RUNNING
                 : pull.state == service::PullState::kDone  ? wire::PULL_STATE_DONE
                                                            : wire::PULL_STATE_FAILED);
  out->set_error(pull.error);
  for (const service::BlobStatus& blob : pull.blobs) {
    wire::BlobStatus* slot = out->add_blobs();
    slot->set_digest(blob.digest);
    slot->set_media_type(blob.media_type);
    slot->set_fetched_bytes(blob.fetched_bytes);
    slot->set_total_bytes(blob.total_bytes);
    slot->set_unpacked_bytes(static_cast<int64_t>(blob.unpacked_bytes));
    slot->set_state(ToWire(blob.state));
    slot->set_layer(blob.layer);
  }
}

service::PullStatus FromWire(const wire::PullStatus& in) {
  service::PullStatus pull{
      .id = in.id(),
      .reference = in.reference(),
      .state = in.state() == wire::PULL_STATE_RUNNING ? service::PullState::kRunning
               : in.state() == wire::PULL_STATE_DONE  ? service::PullState::kDone
                                                      : service::PullState::kFailed,
      .error = in.error()};
  for (const wire::BlobStatus& blob : in.blobs()) {
    pull.blobs.push_back({.digest = blob.digest(),
                          .media_type = blob.media_type(),
                          .layer = blob.layer(),
                          .fetched_bytes = blob.fetched_bytes(),
                          .total_bytes = blob.total_bytes(),
                          .unpacked_bytes = static_cast<uint64_t>(blob.unpacked_bytes()),
                          .state = FromWire(blob.state())});
  }
  return pull;
}

grpc::Status AdminService::PullProgress(grpc::ServerContext* context,
                                        const wire::PullProgressRequest* request,
                                        grpc::ServerWriter<wire::PullProgressUpdate>* writer) {
  auto started = std::chrono::steady_clock::now();
  std::string reference;
  if (!request->reference().empty()) {
    Result<Reference> parsed = Reference::Parse(request->reference());
    if (!parsed) {
      grpc::Status status = ToGrpcStatus(
          parsed.error().WithContext(fmt::format("pull progress of \"{}\"", request->reference())));
      LogRequest("PullProgress", started, status);
      return status;
    }
    reference = parsed->ToString();
  }
  service::PullProgressBoard& board = images_.pull_progress();
  service::PullBoardView view = board.View();
  const uint64_t first_new_id = view.next_id;
  std::set<uint64_t> followed;
  for (const service::PullStatus& pull : view.pulls) {
    if (pull.state == service::PullState::kRunning &&
        (reference.empty() || pull.reference == reference)) {
      followed.insert(pull.id);
    }
  }
  grpc::Status status = grpc::Status::OK;
  while (true) {
    wire::PullProgressUpdate update;
    bool any_running = false;
    for (const service::PullStatus& pull : view.pulls) {
      const bool wanted =
          followed.contains(pull.id) ||
          (pull.id >= first_new_id && (reference.empty() || pull.reference == reference) &&
           // With a reference: only the first pull of it that starts.
           (reference.empty() || followed.empty()));
      if (!wanted) continue;
      followed.insert(pull.id);
      any_running = any_running || pull.state == service::PullState::kRunning;
      ToWire(pull, update.add_pulls());
    }
    if (!writer->Write(update)) {
      status = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      break;
    }
    // Done when what was followed ended; with a reference, once a pull of it was seen.
    if (!any_running && (reference.empty() || !followed.empty())) break;
    const uint64_t seen = view.version;
    while (view.version == seen) {
      if (context->IsCancelled()) {
        status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
        LogRequest("PullProgress", started, status);
        return status;
      }
      view = board.WaitForChange(seen, kCancelPoll);
    }
  }
  LogRequest("PullProgress", started, status);
  return status;
}

grpc::Status AdminService::CollectGarbage(grpc::ServerContext*,
                                          const wire::CollectGarbageRequest* request,
                                          wire::CollectGarbageResponse* response) {
  auto started = std::chrono::steady_clock::now();
  Result<gc::CollectReport> report = images_.CollectGarbage(request->dry_run());
  grpc::Status status = grpc::Status::OK;
  if (report) {
    ToWire(*report, response);
  } else {
    status = ToGrpcStatus(report.error());
  }
  LogRequest("CollectGarbage", started, status);
  return status;
}

grpc::Status AdminService::Check(grpc::ServerContext*, const wire::CheckRequest* request,
                                 wire::CheckResponse* response) {
  auto started = std::chrono::steady_clock::now();
  Result<service::CheckReport> report =
      images_.Check({.repair = request->repair(), .verify_digests = request->verify()});
  grpc::Status status = grpc::Status::OK;
  if (report) {
    for (const std::string& problem : report->problems) response->add_problems(problem);
    ToWire(report->garbage, response->mutable_garbage());
    response->set_blobs_verified(report->blobs_verified);
    response->set_repaired(report->repaired);
  } else {
    status = ToGrpcStatus(report.error());
  }
  LogRequest("Check", started, status);
  return status;
}

}  // namespace berth::cri
