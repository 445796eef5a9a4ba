#include "cmd/berth/backend.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "berth/cri/admin_client.h"
#include "berth/cri/full_disk.h"
#include "berth/cri/image_service_client.h"
#include "berth/stack/image_stack.h"
#include "berth/stack/root_lock.h"
#include "cmd/berth/common.h"

namespace berth::cli {
namespace {

class DaemonBackend final : public ImageBackend {
 public:
  DaemonBackend(std::unique_ptr<cri::ImageServiceClient> client,
                std::unique_ptr<cri::AdminClient> admin, pid_t pid, PullProgressFn pull_progress)
      : client_(std::move(client)),
        admin_(std::move(admin)),
        pid_(pid),
        pull_progress_(std::move(pull_progress)) {}

  std::string Describe() const override {
    return pid_ > 0 ? fmt::format("berthd (pid {}) at {}", pid_, client_->address())
                    : fmt::format("berthd at {}", client_->address());
  }
  bool embedded() const override { return false; }

  Result<service::PullResult> Pull(const service::PullRequest& request) override {
    if (!pull_progress_) return client_->Pull(request);
    // Subscribes to berthd's progress of this reference, then pulls over CRI while the updates
    // arrive on a second thread.
    grpc::ClientContext watch_context;
    std::mutex mutex;
    std::condition_variable changed;
    bool subscribed = false;
    bool ended = false;
    std::thread watcher([&] {
      Result<void> watched = admin_->WatchPullProgress(
          request.image,
          [&](const std::vector<service::PullStatus>& pulls) {
            {
              std::lock_guard lock(mutex);
              subscribed = true;
            }
            changed.notify_all();
            pull_progress_(pulls);
          },
          watch_context);
      {
        std::lock_guard lock(mutex);
        subscribed = true;
        ended = true;
      }
      changed.notify_all();
    });
    // Bounded waits: progress is a courtesy, never a reason to hold up or fail the pull.
    {
      std::unique_lock lock(mutex);
      changed.wait_for(lock, std::chrono::seconds(5), [&] { return subscribed; });
    }
    Result<service::PullResult> pulled = client_->Pull(request);
    {
      // The stream ends by itself once berthd's pull ended; its last updates may still come.
      std::unique_lock lock(mutex);
      changed.wait_for(lock, std::chrono::seconds(5), [&] { return ended; });
    }
    watch_context.TryCancel();
    watcher.join();
    return pulled;
  }
  Result<std::vector<service::Image>> List(std::string_view filter) override {
    return client_->List(filter);
  }
  Result<std::optional<service::Image>> Status(std::string_view ref_or_id) override {
    return client_->Status(ref_or_id);
  }
  Result<void> Remove(std::string_view ref_or_id, service::RemovePinned pinned) override {
    return client_->Remove(ref_or_id, pinned);
  }
  Result<std::vector<service::FilesystemUsage>> FsInfo() override { return client_->FsInfo(); }
  Result<gc::CollectReport> CollectGarbage(bool dry_run) override {
    return admin_->CollectGarbage(dry_run);
  }
  Result<service::CheckReport> Check(const service::CheckOptions& options) override {
    return admin_->Check(options);
  }

 private:
  std::unique_ptr<cri::ImageServiceClient> client_;
  std::unique_ptr<cri::AdminClient> admin_;
  pid_t pid_;
  PullProgressFn pull_progress_;
};

class EmbeddedBackend final : public ImageBackend {
 public:
  EmbeddedBackend(stack::RootLock lock, std::unique_ptr<stack::ImageStack> stack,
                  std::filesystem::path root, PullProgressFn pull_progress)
      : lock_(std::move(lock)),
        stack_(std::move(stack)),
        root_(std::move(root)),
        pull_progress_(std::move(pull_progress)) {}

  std::string Describe() const override {
    return fmt::format("root {} (embedded)", root_.string());
  }
  bool embedded() const override { return true; }

  Result<service::PullResult> Pull(const service::PullRequest& request) override {
    Result<service::PullResult> pulled = PullWatchingTheBoard(request);
    if (pulled) return pulled;
    // A full disk is explained as berthd explains it to its CRI clients.
    const std::filesystem::path directories[] = {root_, stack_->snapshot_root()};
    return Fail(cri::ExplainFullDisk(pulled.error(), directories));
  }
  Result<std::vector<service::Image>> List(std::string_view filter) override {
    return stack_->images().List(filter);
  }
  Result<std::optional<service::Image>> Status(std::string_view ref_or_id) override {
    return stack_->images().Status(ref_or_id);
  }
  Result<void> Remove(std::string_view ref_or_id, service::RemovePinned pinned) override {
    return stack_->images().Remove(ref_or_id, pinned);
  }
  Result<std::vector<service::FilesystemUsage>> FsInfo() override {
    return stack_->images().FsInfo();
  }
  Result<gc::CollectReport> CollectGarbage(bool dry_run) override {
    // This process owns the root (it holds the lock), so a real collection is the start-up one:
    // leases of pulls that died are released too. (OpenBackend for gc skips the automatic one,
    // so the report says what this collection freed.)
    return dry_run ? stack_->images().CollectGarbage(/*dry_run=*/true) : stack_->images().Recover();
  }
  Result<service::CheckReport> Check(const service::CheckOptions& options) override {
    return stack_->images().Check(options);
  }

 private:
  // Pulls while a second thread hands the board's statuses of this pull to pull_progress_.
  Result<service::PullResult> PullWatchingTheBoard(const service::PullRequest& request) {
    if (!pull_progress_) return stack_->images().Pull(request, CancelToken::Never());
    service::PullProgressBoard& board = stack_->images().pull_progress();
    const uint64_t first_id = board.View().next_id;
    std::atomic<bool> pulled_done = false;
    std::thread watcher([&] {
      uint64_t seen = 0;
      for (bool last = false; !last;) {
        last = pulled_done.load();
        service::PullBoardView view = board.WaitForChange(seen, std::chrono::milliseconds(100));
        seen = view.version;
        std::vector<service::PullStatus> ours;
        for (service::PullStatus& pull : view.pulls) {
          if (pull.id >= first_id) ours.push_back(std::move(pull));
        }
        if (!ours.empty()) pull_progress_(ours);
      }
    });
    Result<service::PullResult> pulled = stack_->images().Pull(request, CancelToken::Never());
    pulled_done = true;
    watcher.join();
    return pulled;
  }

  // The lock is released after the stack is closed (members are destroyed in reverse).
  stack::RootLock lock_;
  std::unique_ptr<stack::ImageStack> stack_;
  std::filesystem::path root_;
  PullProgressFn pull_progress_;
};

Result<std::unique_ptr<ImageBackend>> OpenDaemon(const config::Config& config, pid_t pid,
                                                 const BackendOptions& options) {
  if (options.snapshotter) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("--snapshotter applies only when berth opens the root itself; berthd "
                            "at {} pulls into its configured snapshotter",
                            config.address));
  }
  BERTH_ASSIGN_OR_RETURN(auto client, cri::ImageServiceClient::Connect(config.address));
  BERTH_ASSIGN_OR_RETURN(auto admin, cri::AdminClient::Connect(config.address));
  return std::unique_ptr<ImageBackend>(
      new DaemonBackend(std::move(client), std::move(admin), pid, options.pull_progress));
}

Error Refusal(const config::Config& config, const stack::LockHolder& holder,
              std::optional<pid_t> listener) {
  std::string answering =
      listener ? fmt::format("the process answering at {} is pid {}", config.address, *listener)
               : fmt::format("nothing answers at {}", config.address);
  return Error(ErrorCode::kFailedPrecondition,
               fmt::format("{} is running on root {}, but {}; point --address at that berthd's "
                           "socket (its --address), or stop it to use the root directly",
                           holder.ToString(), config.root.string(), answering));
}

// Takes the root's lock, waiting while another berth command holds it; a berthd taking it
// meanwhile is a refusal.
Result<stack::RootLock> LockRoot(const config::Config& config, std::optional<pid_t> listener) {
  bool said = false;
  while (true) {
    Result<stack::RootLock> lock = stack::RootLock::Acquire(config.root, "berth");
    if (lock || lock.error().code() != ErrorCode::kUnavailable) return lock;
    BERTH_ASSIGN_OR_RETURN(std::optional<stack::LockHolder> holder,
                           stack::RootLock::CurrentHolder(config.root));
    if (holder && holder->program == "berthd") return Fail(Refusal(config, *holder, listener));
    if (holder && !said) {
      std::fprintf(stderr, "waiting for %s, which is using root %s\n", holder->ToString().c_str(),
                   config.root.string().c_str());
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

Result<std::unique_ptr<ImageBackend>> OpenBackend(BackendOptions options) {
  BERTH_ASSIGN_OR_RETURN(config::Config config, LoadConfig());
  config.root = std::filesystem::absolute(config.root);
  const bool explicit_root = !Globals().root.empty();
  Result<std::optional<pid_t>> probed = cri::ProbeListener(config.address);
  // A socket we may not connect to (EACCES) does not stand in the way of an explicit --root.
  if (!probed && (!explicit_root || probed.error().code() == ErrorCode::kInvalidArgument)) {
    return Fail(std::move(probed).error());
  }
  const std::optional<pid_t> listener = probed ? *probed : std::nullopt;
  if (listener && !explicit_root) return OpenDaemon(config, *listener, options);

  BERTH_ASSIGN_OR_RETURN(std::optional<stack::LockHolder> holder,
                         stack::RootLock::CurrentHolder(config.root));
  if (holder && holder->program == "berthd") {
    if (listener && (*listener == 0 || holder->pid == 0 || *listener == holder->pid)) {
      return OpenDaemon(config, *listener, options);
    }
    return Fail(Refusal(config, *holder, listener));
  }

  if (options.snapshotter) config.pull.snapshotter = *options.snapshotter;
  BERTH_ASSIGN_OR_RETURN(stack::RootLock lock, LockRoot(config, listener));
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<stack::ImageStack> stack,
                         stack::ImageStack::Open(config, {.recover = options.recover}));
  return std::unique_ptr<ImageBackend>(new EmbeddedBackend(
      std::move(lock), std::move(stack), config.root, std::move(options.pull_progress)));
}

}  // namespace berth::cli
