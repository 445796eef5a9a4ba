// File: berth/pull/arrivals.h
//
// The blob downloads this node is running, as readers other than the download see them: the
// peer endpoint serves a blob to other nodes while it arrives here (peers/arriving_blob.h).
//
//   Arrivals   one Arrival per digest being downloaded. The download (Puller::DownloadBlob)
//              joins it when it starts and leaves it when it ends; a peer's request joins it
//              too, before the download it starts has begun, and so reads the same one.
//   Arrival    one download's progress: its ingest file, the bytes written so far, whether it
//              ended verified or failed.
//
//   std::shared_ptr<Arrival> arrival = arrivals.Join(digest);
//   arrival->Open(writer->OpenReader(), writer->offset());  // then, as bytes are written:
//   arrival->Advance(writer->offset());                      // ... and at the end:
//   arrival->End();  // or Fail()
//   arrivals.Leave(digest, arrival);
//
// An Arrival that is left without End() is failed, so a reader never waits on a download that
// is gone. A reader keeps its Arrival (and the file) as long as it holds the pointer.
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "berth/base/unique_fd.h"
#include "berth/digest/digest.h"
#include "berth/peers/arriving_blob.h"

namespace berth::pull {

class Arrival final : public peers::ArrivingBlob {
 public:
  Progress WaitBeyond(int64_t offset, Clock::time_point deadline) override;
  int file() const override;

  // The download's ingest file is open for reading (`reader`), holding `offset` bytes already (a
  // resumed ingest).
  void Open(UniqueFd reader, int64_t offset);
  // `available` bytes are written.
  void Advance(int64_t available);
  // The download starts again from byte 0 (the same bytes are written again).
  void Restart();
  // Whether the download is asking this node's peers for the blob (else a registry or a
  // mirror): a peer's request must not follow it then, or two nodes asking each other for one
  // blob would each wait for the other. A new Arrival is taken to be asking peers until its
  // download says otherwise.
  void AskingPeers(bool asking);
  bool asking_peers() const;
  // Every byte is written, verified and stored.
  void End();
  // No more bytes will come.
  void Fail();

  Progress progress() const;

 private:
  void Update(const std::function<void(Progress&)>& change);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  UniqueFd reader_;
  Progress progress_;
  bool asking_peers_ = true;
};

class Arrivals {
 public:
  // The Arrival of `digest`: the running one, or a new one (then `*created` is set, if given).
  std::shared_ptr<Arrival> Join(const Digest& digest, bool* created = nullptr);
  // The running Arrival of `digest`, or null.
  std::shared_ptr<Arrival> Find(const Digest& digest) const;
  // `arrival`'s download is over: it is failed unless it ended, and no longer found (a new
  // download of the digest gets a new Arrival). Does nothing to another Arrival of `digest`.
  void Leave(const Digest& digest, const std::shared_ptr<Arrival>& arrival);

 private:
  mutable std::mutex mutex_;
  std::map<Digest, std::shared_ptr<Arrival>> running_;
};

}  // namespace berth::pull
