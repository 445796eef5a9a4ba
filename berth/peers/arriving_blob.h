// File: berth/peers/arriving_blob.h
//
// What the blob server (blob_server.h) needs to serve a blob this node does not hold yet
// (issue 17's pull-through): a node asked for a blob is one of its home peers, and a home that
// lacks it fetches it from the registry the request names (`ns`) once, while every peer asking
// meanwhile is sent the bytes as they arrive.
//
//   ArrivingBlobs   starts (or joins) the one download of a digest and hands out its progress;
//                   the puller implements it (pull/puller.h), so a peer's request and this
//                   node's own pulls share one download of a blob.
//   ArrivingBlob    one download as readers see it: the bytes so far, readable at their offset,
//                   and whether it ended (verified and stored) or failed.
//
// The bytes of a download that has not ended are not verified yet. The server sends them anyway
// (chunked), and ends the response properly only once the download has ended verified; a
// download that fails cuts the response short, so the requester sees an incomplete transfer and
// goes on to its next endpoint. A download that starts again from byte 0 (a registry that
// ignored a Range request) writes the same bytes again: `available` drops, and readers wait
// for it to pass what they sent. The requester verifies every byte against the digest in any case
// (registry/client.h), so a home serving bytes before it has verified them can slow a pull,
// never corrupt it.
//
// Thread safety: both interfaces are used from many connection threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "berth/base/redact.h"
#include "berth/base/result.h"
#include "berth/digest/digest.h"

namespace berth::peers {

class ArrivingBlob {
 public:
  using Clock = std::chrono::steady_clock;

  struct Progress {
    int64_t available = 0;  // bytes [0, available) can be read
    bool ended = false;     // every byte is there, verified and stored
    bool failed = false;    // the download failed; no more bytes will come
  };

  virtual ~ArrivingBlob() = default;

  // Waits until more than `offset` bytes are available, the download ended or failed, or
  // `deadline` passed, and returns the progress then.
  virtual Progress WaitBeyond(int64_t offset, Clock::time_point deadline) = 0;

  // The descriptor the bytes are read from with pread(2) (sendfile(2) alike): valid as long as
  // this object, whatever becomes of the download. -1 until the download has opened its file,
  // which happens before any byte is available.
  virtual int file() const = 0;
};

// A blob a peer asked for that the store does not hold.
struct MissingBlob {
  Digest digest;
  std::string repository;  // the request's <name>: "library/busybox"
  std::string registry;    // the request's `ns`: "docker.io"; "" when it names none
  // The registry's Authorization the requester passed on (registry/client.h's
  // kRegistryAuthorizationHeader): a fetch this request starts uses it, for the registry's host
  // only, instead of this node's own credentials. Empty when none was sent.
  Secret registry_authorization;
};

class ArrivingBlobs {
 public:
  virtual ~ArrivingBlobs() = default;

  // The download of `blob` this node is running, or a new one from `blob.registry`. Errors:
  // kNotFound when there is none and the request names no registry; kAlreadyExists when the
  // store holds the blob by now (serve it from there);
  // kResourceExhausted when this node is fetching as many blobs for peers as it may;
  // kInvalidArgument for a registry or repository that make no reference.
  virtual Result<std::shared_ptr<ArrivingBlob>> Follow(const MissingBlob& blob) = 0;
};

}  // namespace berth::peers
