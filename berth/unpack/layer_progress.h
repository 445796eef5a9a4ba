// File: berth/unpack/layer_progress.h
//
// What the unpacker reports about each layer as it goes: the one vocabulary of layer events,
// shared by its progress callback (unpacker.h), the image service's pull progress board
// (berth/service/pull_progress.h) and the CLI's progress lines. Value types only, so users of
// the events need not include the unpacker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "berth/digest/digest.h"

namespace berth::unpack {

// What happened to one layer; reported from the thread that did it.
enum class LayerEvent {
  kAlreadyPresent,  // its chain ID was committed before this unpack: nothing to do
  kApplied,         // written and diffID verified (not yet committed)
  kCommitted,       // committed as its chain ID
};

struct LayerProgress {
  size_t index = 0;  // in the manifest's layer list
  Digest chain_id = Digest::Sha256Of("");
  LayerEvent event = LayerEvent::kApplied;
  uint64_t uncompressed_bytes = 0;  // for kApplied
};
// Called for each layer event, possibly from several of the pull's threads at once.
using LayerProgressFn = std::function<void(const LayerProgress&)>;

}  // namespace berth::unpack
