// File: tools/imagegen/push.h
//
// The registry round trip: push a generated image (or index) through a RegistryClient, then
// read everything back and check it byte for byte and digest for digest.
//
//   BERTH_ASSIGN_OR_RETURN(Image image, MakeDemoImage());
//   BERTH_ASSIGN_OR_RETURN(auto client, RegistryClient::Create({.base_url = url}));
//   BERTH_ASSIGN_OR_RETURN(PushedImage pushed, PushImage(*client, "demo", "latest", image));
//   BERTH_RETURN_IF_ERROR(VerifyImage(*client, "demo", "latest", image));
//
// All functions block on the network. Thread safety: as RegistryClient.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/registry_client.h"

namespace berth::imagegen {

struct PushedImage {
  std::string repository;
  std::string tag;      // Empty when pushed by digest only.
  Descriptor manifest;  // Of the manifest or index that `tag` names.
  // Blobs sent, and blobs the registry already had.
  int blobs_uploaded = 0;
  int blobs_skipped = 0;

  // "<repository>@<digest>".
  std::string ByDigest() const;
};

// Pushes the layers (skipping those the registry has; files are streamed), the config and the
// manifest. The manifest is put under `tag`, or under its digest when `tag` is empty. Errors
// from RegistryClient, with the failing blob or manifest as context.
Result<PushedImage> PushImage(RegistryClient& client, std::string_view repository,
                              std::string_view tag, const Image& image);

// Pushes every image of `index` (manifests by digest), then the index under `tag` (or its
// digest).
Result<PushedImage> PushImage(RegistryClient& client, std::string_view repository,
                              std::string_view tag, const ImageIndex& index);

// Reads `reference` (a tag or digest) back and checks that the registry serves exactly the
// expected manifest (bytes and media type), the config, and every layer with the digest and
// size the manifest names. Layers are streamed and hashed, not held in memory.
// kDataLoss on any difference; registry errors as RegistryClient returns them.
Result<void> VerifyImage(RegistryClient& client, std::string_view repository,
                         std::string_view reference, const Image& expected);

// The same for an index: the index itself, then every image it lists, by digest.
Result<void> VerifyImage(RegistryClient& client, std::string_view repository,
                         std::string_view reference, const ImageIndex& expected);

}  // namespace berth::imagegen
