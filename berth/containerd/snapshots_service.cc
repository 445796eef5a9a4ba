#include "berth/containerd/snapshots_service.h"

#include <fmt/format.h>

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "berth/base/log.h"
#include "berth/containerd/filter.h"
#include "berth/containerd/labels.h"
#include "berth/cri/call_cancellation.h"
#include "berth/cri/grpc_status.h"

namespace berth::containerd {
namespace {

using Clock = std::chrono::steady_clock;
using snapshot::kContainerdKeyPrefix;

// List sends its snapshots in messages of this many (containerd's own service batches too).
constexpr size_t kListBatch = 100;

// The stored key of containerd's `key`; "" (no parent) stays "".
std::string Owned(std::string_view key) {
  if (key.empty()) return "";
  return std::string(kContainerdKeyPrefix) + std::string(key);
}

// containerd's key for a stored key, or nullopt when the snapshot is not containerd's.
std::optional<std::string> Unowned(std::string_view stored) {
  if (!stored.starts_with(kContainerdKeyPrefix)) return std::nullopt;
  return std::string(stored.substr(kContainerdKeyPrefix.size()));
}

Result<void> CheckKey(std::string_view what, std::string_view key) {
  if (key.empty()) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("snapshot {} must not be empty", what));
  }
  return Ok();
}

snapshot::Labels ToLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  return snapshot::Labels(labels.begin(), labels.end());
}

void SetTimestamp(std::chrono::system_clock::time_point time, google::protobuf::Timestamp& out) {
  const int64_t nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
  int64_t seconds = nanos / 1'000'000'000;
  int64_t rest = nanos % 1'000'000'000;
  if (rest < 0) {
    rest += 1'000'000'000;
    --seconds;
  }
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(rest));
}

api::Kind ToApiKind(snapshot::Kind kind) {
  switch (kind) {
    case snapshot::Kind::kView:
      return api::VIEW;
    case snapshot::Kind::kActive:
      return api::ACTIVE;
    case snapshot::Kind::kCommitted:
      return api::COMMITTED;
  }
  return api::UNKNOWN;
}

// `info` as containerd sees it (prefix stripped). REQUIRES: info.name is containerd's.
snapshot::Info ToContainerdView(snapshot::Info info) {
  info.name = Unowned(info.name).value_or(info.name);
  info.parent = Unowned(info.parent).value_or(info.parent);
  return info;
}

void ToApiInfo(const snapshot::Info& info, api::Info& out) {
  out.set_name(info.name);
  out.set_parent(info.parent);
  out.set_kind(ToApiKind(info.kind));
  SetTimestamp(info.created, *out.mutable_created_at());
  SetTimestamp(info.updated, *out.mutable_updated_at());
  out.mutable_labels()->insert(info.labels.begin(), info.labels.end());
}

template <typename Response>
void ToApiMounts(const std::vector<snapshot::Mount>& mounts, Response& response) {
  for (const snapshot::Mount& mount : mounts) {
    ::containerd::types::Mount* out = response.add_mounts();
    out->set_type(mount.type);
    out->set_source(mount.source);
    out->mutable_options()->Add(mount.options.begin(), mount.options.end());
  }
}

// Logs one line at debug when the request ends, and turns a berth Error into the call's status
// with containerd's keys (not the stored ones) in its message.
class Request {
 public:
  Request(std::string_view method, std::initializer_list<std::string_view> keys)
      : method_(method), keys_(keys.begin(), keys.end()), started_(Clock::now()) {}

  grpc::Status Done(const Result<void>& result) {
    grpc::Status status = grpc::Status::OK;
    if (!result) status = cri::ToGrpcStatus(ForContainerd(result.error()));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
    const std::string_view key = keys_.empty() ? std::string_view() : keys_.front();
    if (status.ok()) {
      log::Debug("containerd.snapshots",
                 {{"method", method_}, {"key", key}, {"ms", ms.count()}, {"code", "OK"}});
    } else {
      log::Debug("containerd.snapshots", {{"method", method_},
                                          {"key", key},
                                          {"ms", ms.count()},
                                          {"code", ErrorCodeName(result.error().code())},
                                          {"error", status.error_message()}});
    }
    return status;
  }

 private:
  Error ForContainerd(const Error& error) const {
    std::string message = error.ToString();
    for (std::string_view key : keys_) {
      if (key.empty()) continue;
      const std::string stored = Owned(key);
      for (size_t at = message.find(stored); at != std::string::npos;
           at = message.find(stored, at + key.size())) {
        message.replace(at, stored.size(), key);
      }
    }
    return Error(error.code(), std::move(message));
  }

  std::string_view method_;
  std::vector<std::string_view> keys_;
  Clock::time_point started_;
};

}  // namespace

grpc::Status SnapshotsService::Prepare(grpc::ServerContext* context,
                                       const api::PrepareSnapshotRequest* request,
                                       api::PrepareSnapshotResponse* response) {
  Request call("Prepare", {request->key(), request->parent()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    const snapshot::Labels labels = ToLabels(request->labels());
    if (layers_ != nullptr && labels.contains(std::string(kSnapshotRefLabel))) {
      cri::CallCancellation cancellation(*context);
      if (layers_->Provide({.key = request->key(), .parent = request->parent(), .labels = labels},
                           cancellation.token())) {
        return Fail(ErrorCode::kAlreadyExists,
                    fmt::format("snapshot {}: berth fetched and unpacked layer {} itself",
                                request->key(), labels.at(std::string(kSnapshotRefLabel))));
      }
    }
    BERTH_ASSIGN_OR_RETURN(
        std::vector<snapshot::Mount> mounts,
        snapshotter_.Prepare(Owned(request->key()), Owned(request->parent()), labels));
    ToApiMounts(mounts, *response);
    return Ok();
  }());
}

grpc::Status SnapshotsService::View(grpc::ServerContext*, const api::ViewSnapshotRequest* request,
                                    api::ViewSnapshotResponse* response) {
  Request call("View", {request->key(), request->parent()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    BERTH_ASSIGN_OR_RETURN(std::vector<snapshot::Mount> mounts,
                           snapshotter_.View(Owned(request->key()), Owned(request->parent()),
                                             ToLabels(request->labels())));
    ToApiMounts(mounts, *response);
    return Ok();
  }());
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext*, const api::MountsRequest* request,
                                      api::MountsResponse* response) {
  Request call("Mounts", {request->key()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    BERTH_ASSIGN_OR_RETURN(std::vector<snapshot::Mount> mounts,
                           snapshotter_.Mounts(Owned(request->key())));
    ToApiMounts(mounts, *response);
    return Ok();
  }());
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext*,
                                      const api::CommitSnapshotRequest* request,
                                      google::protobuf::Empty*) {
  Request call("Commit", {request->key(), request->name(), request->parent()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("name", request->name()));
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    const snapshot::Labels labels = ToLabels(request->labels());
    if (request->parent().empty()) {
      return snapshotter_.Commit(Owned(request->name()), Owned(request->key()), labels);
    }
    return snapshotter_.CommitRebased(Owned(request->name()), Owned(request->key()),
                                      Owned(request->parent()), labels);
  }());
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext*,
                                      const api::RemoveSnapshotRequest* request,
                                      google::protobuf::Empty*) {
  Request call("Remove", {request->key()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    return snapshotter_.Remove(Owned(request->key()));
  }());
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext*, const api::StatSnapshotRequest* request,
                                    api::StatSnapshotResponse* response) {
  Request call("Stat", {request->key()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    BERTH_ASSIGN_OR_RETURN(snapshot::Info info, snapshotter_.Stat(Owned(request->key())));
    ToApiInfo(ToContainerdView(std::move(info)), *response->mutable_info());
    return Ok();
  }());
}

grpc::Status SnapshotsService::Update(grpc::ServerContext*,
                                      const api::UpdateSnapshotRequest* request,
                                      api::UpdateSnapshotResponse* response) {
  const std::string& key = request->info().name();
  Request call("Update", {key});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("name", key));
    const auto& labels = request->info().labels();
    snapshot::LabelUpdate update{.mode = snapshot::LabelUpdate::Mode::kReplace,
                                 .set = ToLabels(labels)};
    bool replace = request->update_mask().paths().empty();
    snapshot::LabelUpdate merge{.mode = snapshot::LabelUpdate::Mode::kMerge};
    for (const std::string& path : request->update_mask().paths()) {
      if (path == "labels") {
        replace = true;
      } else if (path.starts_with("labels.") && path.size() > 7) {
        std::string label = path.substr(7);
        if (auto value = labels.find(label); value != labels.end()) {
          merge.set.insert_or_assign(label, value->second);
        } else {
          merge.remove.push_back(std::move(label));
        }
      } else {
        return Fail(ErrorCode::kInvalidArgument,
                    fmt::format("cannot update field \"{}\" of snapshot {}: only \"labels\" and "
                                "\"labels.<key>\" can change",
                                path, key));
      }
    }
    BERTH_ASSIGN_OR_RETURN(snapshot::Info info,
                           snapshotter_.UpdateLabels(Owned(key), replace ? update : merge));
    ToApiInfo(ToContainerdView(std::move(info)), *response->mutable_info());
    return Ok();
  }());
}

grpc::Status SnapshotsService::List(grpc::ServerContext*, const api::ListSnapshotsRequest* request,
                                    grpc::ServerWriter<api::ListSnapshotsResponse>* writer) {
  Request call("List", {});
  return call.Done([&]() -> Result<void> {
    BERTH_ASSIGN_OR_RETURN(
        SnapshotFilter filter,
        SnapshotFilter::Parse({request->filters().begin(), request->filters().end()}));
    std::vector<snapshot::Info> matched;
    BERTH_RETURN_IF_ERROR(snapshotter_.Walk([&](const snapshot::Info& info) -> Result<void> {
      if (!info.name.starts_with(kContainerdKeyPrefix)) return Ok();  // berth's own
      snapshot::Info seen = ToContainerdView(info);
      if (filter.Matches(seen)) matched.push_back(std::move(seen));
      return Ok();
    }));
    for (size_t start = 0; start < matched.size(); start += kListBatch) {
      api::ListSnapshotsResponse batch;
      for (size_t i = start; i < std::min(matched.size(), start + kListBatch); ++i) {
        ToApiInfo(matched[i], *batch.add_info());
      }
      if (!writer->Write(batch)) {
        return Fail(ErrorCode::kCancelled, "the client went away while List was streaming");
      }
    }
    return Ok();
  }());
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext*, const api::UsageRequest* request,
                                     api::UsageResponse* response) {
  Request call("Usage", {request->key()});
  return call.Done([&]() -> Result<void> {
    BERTH_RETURN_IF_ERROR(CheckKey("key", request->key()));
    BERTH_ASSIGN_OR_RETURN(snapshot::Usage usage, snapshotter_.GetUsage(Owned(request->key())));
    response->set_size(usage.size);
    response->set_inodes(usage.inodes);
    return Ok();
  }());
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext*, const api::CleanupRequest*,
                                       google::protobuf::Empty*) {
  Request call("Cleanup", {});
  return call.Done([&]() -> Result<void> {
    BERTH_ASSIGN_OR_RETURN(std::vector<std::filesystem::path> removed, cleaner_.Cleanup());
    log::Debug("containerd.snapshots.cleanup", {{"directories", removed.size()}});
    return Ok();
  }());
}

}  // namespace berth::containerd
