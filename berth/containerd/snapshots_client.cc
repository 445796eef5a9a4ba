#include "berth/containerd/snapshots_client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <optional>
#include <utility>

#include "berth/cri/grpc_status.h"
#include "berth/cri/image_service_client.h"

namespace berth::containerd {
namespace {

namespace api = ::containerd::services::snapshots::v1;

std::chrono::system_clock::time_point FromTimestamp(const google::protobuf::Timestamp& time) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(time.seconds()) + std::chrono::nanoseconds(time.nanos())));
}

snapshot::Info FromApiInfo(const api::Info& info) {
  snapshot::Info out;
  out.name = info.name();
  out.parent = info.parent();
  switch (info.kind()) {
    case api::VIEW:
      out.kind = snapshot::Kind::kView;
      break;
    case api::COMMITTED:
      out.kind = snapshot::Kind::kCommitted;
      break;
    default:
      out.kind = snapshot::Kind::kActive;
      break;
  }
  out.labels = snapshot::Labels(info.labels().begin(), info.labels().end());
  out.created = FromTimestamp(info.created_at());
  out.updated = FromTimestamp(info.updated_at());
  return out;
}

template <typename Response>
std::vector<snapshot::Mount> FromApiMounts(const Response& response) {
  std::vector<snapshot::Mount> mounts;
  for (const ::containerd::types::Mount& mount : response.mounts()) {
    mounts.push_back({.type = mount.type(),
                      .source = mount.source(),
                      .options = {mount.options().begin(), mount.options().end()}});
  }
  return mounts;
}

template <typename Request>
void SetLabels(const snapshot::Labels& labels, Request& request) {
  request.mutable_labels()->insert(labels.begin(), labels.end());
}

bool HasOption(const snapshot::Mount& mount, std::string_view option) {
  for (const std::string& each : mount.options) {
    if (each == option) return true;
  }
  return false;
}

// The value of the option "<name>=value", or nullopt.
std::optional<std::string> OptionValue(const snapshot::Mount& mount, std::string_view name) {
  for (const std::string& each : mount.options) {
    if (each.size() > name.size() && each.starts_with(name) && each[name.size()] == '=') {
      return each.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<SnapshotsClient>> SnapshotsClient::Connect(std::string_view address,
                                                                  SnapshotsClientOptions options) {
  BERTH_ASSIGN_OR_RETURN(std::filesystem::path path, cri::UnixSocketPath(address));
  auto channel = grpc::CreateChannel("unix:" + path.string(), grpc::InsecureChannelCredentials());
  return std::unique_ptr<SnapshotsClient>(new SnapshotsClient(
      std::string(address), std::move(options), api::Snapshots::NewStub(channel)));
}

std::unique_ptr<grpc::ClientContext> SnapshotsClient::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + options_.timeout);
  return context;
}

Result<void> SnapshotsClient::Check(const grpc::Status& status, std::string_view method) const {
  if (status.ok()) return Ok();
  return Fail(cri::FromGrpcStatus(status).WithContext(
      fmt::format("containerd Snapshots.{} via {}", method, address_)));
}

Result<std::vector<snapshot::Mount>> SnapshotsClient::Prepare(std::string_view key,
                                                              std::string_view parent,
                                                              const snapshot::Labels& labels) {
  api::PrepareSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_key(std::string(key));
  request.set_parent(std::string(parent));
  SetLabels(labels, request);
  api::PrepareSnapshotResponse response;
  BERTH_RETURN_IF_ERROR(Check(stub_->Prepare(NewContext().get(), request, &response), "Prepare"));
  return FromApiMounts(response);
}

Result<std::vector<snapshot::Mount>> SnapshotsClient::View(std::string_view key,
                                                           std::string_view parent,
                                                           const snapshot::Labels& labels) {
  api::ViewSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_key(std::string(key));
  request.set_parent(std::string(parent));
  SetLabels(labels, request);
  api::ViewSnapshotResponse response;
  BERTH_RETURN_IF_ERROR(Check(stub_->View(NewContext().get(), request, &response), "View"));
  return FromApiMounts(response);
}

Result<std::vector<snapshot::Mount>> SnapshotsClient::Mounts(std::string_view key) {
  api::MountsRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_key(std::string(key));
  api::MountsResponse response;
  BERTH_RETURN_IF_ERROR(Check(stub_->Mounts(NewContext().get(), request, &response), "Mounts"));
  return FromApiMounts(response);
}

Result<void> SnapshotsClient::Commit(std::string_view name, std::string_view key,
                                     const snapshot::Labels& labels) {
  api::CommitSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_name(std::string(name));
  request.set_key(std::string(key));
  SetLabels(labels, request);
  google::protobuf::Empty response;
  return Check(stub_->Commit(NewContext().get(), request, &response), "Commit");
}

Result<void> SnapshotsClient::CommitRebased(std::string_view name, std::string_view key,
                                            std::string_view parent,
                                            const snapshot::Labels& labels) {
  if (parent.empty()) return Commit(name, key, labels);
  if (!SupportsRebase()) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("the snapshotter at {} is not known to rebase (client options); "
                            "prepare {} on its parent instead",
                            address_, key));
  }
  api::CommitSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_name(std::string(name));
  request.set_key(std::string(key));
  request.set_parent(std::string(parent));
  SetLabels(labels, request);
  google::protobuf::Empty response;
  return Check(stub_->Commit(NewContext().get(), request, &response), "Commit");
}

Result<void> SnapshotsClient::Remove(std::string_view key) {
  api::RemoveSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_key(std::string(key));
  google::protobuf::Empty response;
  return Check(stub_->Remove(NewContext().get(), request, &response), "Remove");
}

Result<snapshot::Info> SnapshotsClient::Stat(std::string_view key) {
  api::StatSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_key(std::string(key));
  api::StatSnapshotResponse response;
  BERTH_RETURN_IF_ERROR(Check(stub_->Stat(NewContext().get(), request, &response), "Stat"));
  return FromApiInfo(response.info());
}

Result<void> SnapshotsClient::Rename(std::string_view name, std::string_view new_name,
                                     const snapshot::Labels&) {
  return Fail(ErrorCode::kUnimplemented,
              fmt::format("cannot rename snapshot {} to {}: containerd's Snapshots API has no "
                          "rename",
                          name, new_name));
}

Result<snapshot::Info> SnapshotsClient::UpdateLabels(std::string_view key,
                                                     const snapshot::LabelUpdate& update) {
  api::UpdateSnapshotRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.mutable_info()->set_name(std::string(key));
  SetLabels(update.set, *request.mutable_info());
  if (update.mode == snapshot::LabelUpdate::Mode::kReplace) {
    if (!update.remove.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "a label update that replaces every label cannot also name labels to remove");
    }
    request.mutable_update_mask()->add_paths("labels");
  } else {
    for (const auto& [name, value] : update.set) {
      request.mutable_update_mask()->add_paths("labels." + name);
    }
    for (const std::string& name : update.remove) {
      if (!update.set.contains(name)) request.mutable_update_mask()->add_paths("labels." + name);
    }
    if (request.update_mask().paths().empty()) return Stat(key);  // nothing to change
  }
  api::UpdateSnapshotResponse response;
  BERTH_RETURN_IF_ERROR(Check(stub_->Update(NewContext().get(), request, &response), "Update"));
  return FromApiInfo(response.info());
}

Result<snapshot::Usage> SnapshotsClient::GetUsage(std::string_view key) {
  api::UsageRequest request;
  request.set_snapshotter(options_.snapshotter);
  request.set_key(std::string(key));
  api::UsageResponse response;
  BERTH_RETURN_IF_ERROR(Check(stub_->Usage(NewContext().get(), request, &response), "Usage"));
  return snapshot::Usage{.size = response.size(), .inodes = response.inodes()};
}

Result<std::vector<snapshot::Info>> SnapshotsClient::List(const std::vector<std::string>& filters) {
  api::ListSnapshotsRequest request;
  request.set_snapshotter(options_.snapshotter);
  for (const std::string& filter : filters) request.add_filters(filter);
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  std::unique_ptr<grpc::ClientReader<api::ListSnapshotsResponse>> reader =
      stub_->List(context.get(), request);
  std::vector<snapshot::Info> infos;
  api::ListSnapshotsResponse batch;
  while (reader->Read(&batch)) {
    for (const api::Info& info : batch.info()) infos.push_back(FromApiInfo(info));
  }
  BERTH_RETURN_IF_ERROR(Check(reader->Finish(), "List"));
  return infos;
}

Result<void> SnapshotsClient::Walk(
    const std::function<Result<void>(const snapshot::Info&)>& visit) {
  BERTH_ASSIGN_OR_RETURN(std::vector<snapshot::Info> infos, List({}));
  for (const snapshot::Info& info : infos) BERTH_RETURN_IF_ERROR(visit(info));
  return Ok();
}

Result<snapshot::ApplyTarget> SnapshotsClient::GetApplyTarget(std::string_view key) {
  BERTH_ASSIGN_OR_RETURN(snapshot::Info info, Stat(key));
  if (info.kind != snapshot::Kind::kActive) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("snapshot {} is {}; layers can only be applied to an active snapshot",
                            key, snapshot::KindName(info.kind)));
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<snapshot::Mount> mounts, Mounts(key));
  if (mounts.size() == 1 && mounts[0].type == "overlay") {
    std::optional<std::string> upper = OptionValue(mounts[0], "upperdir");
    if (upper) {
      snapshot::ApplyTarget target{.directory = *upper,
                                   .whiteouts = snapshot::WhiteoutStyle::kOverlay,
                                   .opaque_xattr = HasOption(mounts[0], "userxattr")
                                                       ? "user.overlay.opaque"
                                                       : "trusted.overlay.opaque"};
      if (std::optional<std::string> lower = OptionValue(mounts[0], "lowerdir")) {
        for (size_t start = 0; start <= lower->size();) {
          size_t end = std::min(lower->find(':', start), lower->size());
          if (end > start) target.lower_dirs.emplace_back(lower->substr(start, end - start));
          start = end + 1;
        }
      }
      return target;
    }
  }
  if (mounts.size() == 1 && mounts[0].type == "bind" && !HasOption(mounts[0], "ro")) {
    return snapshot::ApplyTarget{.directory = mounts[0].source,
                                 .whiteouts = snapshot::WhiteoutStyle::kDelete};
  }
  std::string described;
  for (const snapshot::Mount& mount : mounts) {
    described += (described.empty() ? "" : "; ") + snapshot::ToString(mount);
  }
  return Fail(
      ErrorCode::kUnimplemented,
      fmt::format("cannot tell where to write snapshot {} from its mounts ({})", key, described));
}

Result<void> SnapshotsClient::Cleanup() {
  api::CleanupRequest request;
  request.set_snapshotter(options_.snapshotter);
  google::protobuf::Empty response;
  return Check(stub_->Cleanup(NewContext().get(), request, &response), "Cleanup");
}

}  // namespace berth::containerd
