// Arrivals and Arrival: one download of a digest at a time, as its readers see it.
#include "berth/pull/arrivals.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace berth::pull {
namespace {

using Clock = std::chrono::steady_clock;

const Digest kDigest = Digest::Sha256Of("blob");

TEST(ArrivalsTest, AReaderAndTheDownloadJoinOneArrivalUntilItIsLeft) {
  Arrivals arrivals;
  EXPECT_EQ(arrivals.Find(kDigest), nullptr);
  std::shared_ptr<Arrival> first = arrivals.Join(kDigest);
  EXPECT_EQ(arrivals.Join(kDigest), first);
  EXPECT_EQ(arrivals.Find(kDigest), first);
  EXPECT_NE(arrivals.Join(Digest::Sha256Of("other")), first);

  arrivals.Leave(kDigest, first);
  EXPECT_EQ(arrivals.Find(kDigest), nullptr);
  EXPECT_TRUE(first->progress().failed) << "left without End(): no more bytes will come";
  std::shared_ptr<Arrival> next = arrivals.Join(kDigest);
  EXPECT_NE(next, first);
  // Leaving an older Arrival does not drop the running one.
  arrivals.Leave(kDigest, first);
  EXPECT_EQ(arrivals.Find(kDigest), next);
}

TEST(ArrivalsTest, AnEndedArrivalStaysEndedWhenLeft) {
  Arrivals arrivals;
  std::shared_ptr<Arrival> arrival = arrivals.Join(kDigest);
  arrival->Open(UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)), 0);
  arrival->Advance(10);
  arrival->End();
  arrivals.Leave(kDigest, arrival);
  const peers::ArrivingBlob::Progress progress = arrival->progress();
  EXPECT_TRUE(progress.ended);
  EXPECT_FALSE(progress.failed);
  EXPECT_EQ(progress.available, 10);
  EXPECT_GE(arrival->file(), 0);
}

TEST(ArrivalTest, ANewArrivalIsTakenToBeAskingPeersUntilItsDownloadSaysOtherwise) {
  Arrival arrival;
  EXPECT_TRUE(arrival.asking_peers());
  arrival.AskingPeers(false);
  EXPECT_FALSE(arrival.asking_peers());
}

TEST(ArrivalTest, WaitBeyondWakesOnNewBytesOnTheEndAndOnFailure) {
  Arrival arrival;
  EXPECT_EQ(arrival.file(), -1) << "no file before the download opens one";
  // Nothing happens: the wait ends at its deadline with the progress as it was.
  EXPECT_EQ(arrival.WaitBeyond(0, Clock::now() + std::chrono::milliseconds(20)).available, 0);

  std::thread download([&] {
    arrival.Open(UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)), 5);
    arrival.Advance(8);
  });
  peers::ArrivingBlob::Progress progress = arrival.WaitBeyond(0, Clock::time_point::max());
  EXPECT_GE(progress.available, 5);
  download.join();
  EXPECT_EQ(arrival.WaitBeyond(7, Clock::time_point::max()).available, 8);

  // A restart: the same bytes come again; readers wait for them to pass what they have.
  arrival.Restart();
  EXPECT_EQ(arrival.progress().available, 0);
  std::thread failing([&] { arrival.Fail(); });
  progress = arrival.WaitBeyond(8, Clock::time_point::max());
  failing.join();
  EXPECT_TRUE(progress.failed);
  arrival.End();
  EXPECT_FALSE(arrival.progress().ended) << "a failed download does not end";
}

}  // namespace
}  // namespace berth::pull
