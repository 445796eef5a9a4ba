// File: cmd/berth/backend.h
//
// Where the image commands (pull, images, inspect, rmi, fsinfo, gc, check) send their work. Two
// implementations of one seam:
//
//  - daemon mode: berthd over CRI runtime.v1 on its unix socket (cri::ImageServiceClient), and
//    berth.v1.Admin on the same socket for pull progress, gc and check (cri::AdminClient);
//  - embedded mode: the root opened in this process (stack::ImageStack, built the way berthd
//    builds it), holding the root's lock for the command's duration.
//
// OpenBackend() picks one from the config's address (--address) and root (--root):
//
//  1. Something answers at the address and no --root was given: daemon mode.
//  2. A berthd holds the root's lock: daemon mode if that berthd is the process answering at the
//     address (SO_PEERCRED), else refuse, naming the berthd and its pid — its socket is elsewhere,
//     and opening its root beside it would corrupt what it serves.
//  3. Otherwise embedded mode. If another berth command holds the root in embedded mode, wait
//     for it (saying so on stderr).
//
// So an explicit --root wins over a daemon serving some other root at the address.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/config/config.h"
#include "berth/service/image_service.h"
#include "berth/unpack/unpacker.h"

namespace berth::cli {

class ImageBackend {
 public:
  virtual ~ImageBackend() = default;

  // "berthd (pid 123) at unix:///run/berth/berth.sock" or "root /var/lib/berth (embedded)".
  virtual std::string Describe() const = 0;
  virtual bool embedded() const = 0;

  // The calls and contracts of service::ImageService (and cri::ImageServiceClient).
  virtual Result<service::PullResult> Pull(const service::PullRequest& request) = 0;
  virtual Result<std::vector<service::Image>> List(std::string_view filter) = 0;
  virtual Result<std::optional<service::Image>> Status(std::string_view ref_or_id) = 0;
  virtual Result<void> Remove(std::string_view ref_or_id, service::RemovePinned pinned) = 0;
  virtual Result<std::vector<service::FilesystemUsage>> FsInfo() = 0;
  // Garbage collection and the consistency check (service::ImageService); in daemon mode
  // through berthd's berth.v1.Admin service (cri::AdminClient).
  virtual Result<gc::CollectReport> CollectGarbage(bool dry_run) = 0;
  virtual Result<service::CheckReport> Check(const service::CheckOptions& options) = 0;
};

// The statuses of a pull on its image service's progress board (service::PullProgressBoard).
using PullProgressFn = std::function<void(const std::vector<service::PullStatus>&)>;

struct BackendOptions {
  // Called with each update of a pull's progress, from a second thread while Pull() runs, and
  // once more with its last state before Pull() returns: in daemon mode from berthd's board
  // (Admin.PullProgress, the pulls of the reference), in embedded mode from this process's
  // (the pulls started by this Pull()).
  PullProgressFn pull_progress;
  // Embedded mode: pull into this snapshotter instead of the config's. In daemon mode asking for
  // one is kInvalidArgument (berthd pulls into its own).
  std::optional<config::SnapshotterKind> snapshotter;
  // Embedded mode: run start-up reconciliation when opening the root (off for `berth check`,
  // which reports what it would change).
  bool recover = true;
};

// Loads the config (global options applied) and opens the backend the rules above choose.
// Errors: the config's; kInvalidArgument for a bad address, or for options.snapshotter in daemon
// mode; the probe's connect error (e.g. kPermissionDenied) unless --root was given;
// kFailedPrecondition when a berthd holds the root but is not the one answering at the address;
// the root lock's and the image stack's.
Result<std::unique_ptr<ImageBackend>> OpenBackend(BackendOptions options = {});

}  // namespace berth::cli
