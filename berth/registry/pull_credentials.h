// File: berth/registry/pull_credentials.h
//
// PullCredentials holds the registry credentials of the image pulls in flight, so that the code
// fetching those images' layers can use what kubelet sent. Kubelet's pull secrets reach only the
// CRI ImageService: in front mode (config `upstream_image_endpoint`) berth's CRI forwards each
// PullImage to containerd and, for exactly as long as that call runs, keeps its AuthConfig here.
// The remote-snapshot fetch (berthd serving containerd's Snapshots API) looks the credentials up
// when containerd's unpacker asks for a layer of that image.
//
// Contract:
//   - Memory only. Nothing here writes to disk, logs, or puts a credential into an Error.
//     ToString() and the counts name images, hosts and holder counts, never a secret (the
//     credentials are registry::CriAuthConfig, whose secrets are Secrets).
//   - Held only while the pull is in flight. Register() returns a Hold; the credentials are
//     findable from the moment Register() returns until the Hold is released or destroyed,
//     whatever the outcome of the pull. The caller registers before it forwards the pull and
//     drops the Hold when the call returns.
//   - Several holders. Concurrent pulls of the same image (or of images of the same registry)
//     each register their own credentials; dropping one leaves the others findable. A lookup
//     returns the credentials of the most recent Register() still held.
//   - Keys. An image is keyed by its normalized reference as containerd's CRI writes it into
//     the snapshot label `containerd.io/snapshot/cri.image-ref` (Reference::Parse: "busybox" is
//     "docker.io/library/busybox:latest"), and also by its registry host (Reference::domain():
//     "docker.io", "127.0.0.1:5000"), for a fetch that knows only the host.
//   - What a user does with the result: the credentials are the CRI AuthConfig as kubelet sent
//     it; registry::CredentialsForHost(auth, host) gives the Credentials for a request to a
//     host, honouring server_address as containerd does (credentials sent for one registry are
//     never used for another).
//
// Thread safety: safe for concurrent use; a Hold may be released on any thread. Lookups copy the
// credentials out under a lock (the number of pulls in flight is small; lookups scan them).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/registry/auth.h"

namespace berth::registry {

class PullCredentials {
 public:
  // The registration of one pull's credentials; releasing it (Release() or the destructor) makes
  // them unfindable. Move-only. REQUIRES: does not outlive the PullCredentials that made it.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept;
    Hold& operator=(Hold&& other) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { Release(); }

    // Drops the credentials now. Idempotent.
    void Release();
    // False for a default-constructed, moved-from or released Hold.
    bool held() const { return owner_ != nullptr; }

   private:
    friend class PullCredentials;
    Hold(PullCredentials* owner, uint64_t id) : owner_(owner), id_(id) {}

    PullCredentials* owner_ = nullptr;
    uint64_t id_ = 0;
  };

  PullCredentials() = default;
  PullCredentials(const PullCredentials&) = delete;
  PullCredentials& operator=(const PullCredentials&) = delete;
  // REQUIRES: no Hold is still held.
  ~PullCredentials() = default;

  // The normalized reference `image` is held under ("docker.io/library/busybox:latest"), or
  // kInvalidArgument when `image` is not an image reference.
  static Result<std::string> ImageKey(std::string_view image);

  // Holds `auth` for pulls of `image` until the returned Hold goes. kInvalidArgument when
  // `image` is not an image reference (nothing is held then). Does not block beyond the lock.
  Result<Hold> Register(std::string_view image, CriAuthConfig auth);

  // The credentials of the most recent pull in flight of `image` (any spelling of the reference
  // that normalizes to the same key), or nullopt when none is in flight or `image` is not a
  // reference.
  std::optional<CriAuthConfig> ForImage(std::string_view image) const;

  // The credentials of the most recent pull in flight of any image of the registry `host`
  // ("docker.io", "127.0.0.1:5000"), or nullopt.
  std::optional<CriAuthConfig> ForHost(std::string_view host) const;

  // How many pulls in flight hold credentials for `image` (0 for a non-reference).
  size_t HoldersOf(std::string_view image) const;
  // How many pulls in flight hold credentials, for all images.
  size_t size() const;

  // "docker.io/library/busybox:latest host=docker.io holders=2, r.test/app:v1 host=r.test
  // holders=1" for logs and test failures, or "none"; never a credential.
  std::string ToString() const;

 private:
  struct Entry {
    std::string image_key;
    std::string host;
    CriAuthConfig auth;
  };

  void Drop(uint64_t id);

  mutable std::mutex mutex_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Entry> entries_;  // by registration order
};

}  // namespace berth::registry
