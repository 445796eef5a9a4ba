// File: testing/test_images.h
//
// Test-only: two small images that share their base layer, built with imagegen, and a helper
// that pushes them to a TestRegistry. Used by the service's unit tests and the CRI and CLI
// end-to-end tests. (Header-only; link berth::imagegen.)
//
//   image A: base layer (/etc/os-release, /bin/tool) + layer /a.txt,  User "1000:1000"
//   image B: base layer                              + layer /b.txt,  User "nobody"
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "berth/base/result.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

namespace berth::service::testing {

inline Result<imagegen::Layer> BaseLayer() {
  imagegen::FileTree tree;
  tree.AddDirectory("etc")
      .AddFile("etc/os-release", "ID=berth-test\n")
      .AddDirectory("bin")
      .AddFile("bin/tool", "#!/bin/sh\necho tool\n", {.mode = 0755});
  return imagegen::BuildLayer(tree);
}

// `name` is "a" or "b": the image's own file and user.
inline Result<imagegen::Image> MakeTestImage(std::string_view name) {
  BERTH_ASSIGN_OR_RETURN(imagegen::Layer base, BaseLayer());
  imagegen::FileTree top;
  top.AddFile(std::string(name) + ".txt", "image " + std::string(name) + "\n");
  BERTH_ASSIGN_OR_RETURN(imagegen::Layer own,
                         imagegen::BuildLayer(top, {.compression = imagegen::Compression::kZstd}));
  imagegen::ImageConfig config;
  config.user = name == "a" ? "1000:1000" : "nobody";
  config.cmd = {"/bin/tool"};
  std::vector<imagegen::Layer> layers;
  layers.push_back(std::move(base));
  layers.push_back(std::move(own));
  return imagegen::AssembleImage(config, std::move(layers));
}

inline Result<imagegen::PushedImage> PushTestImage(
    std::string_view base_url, std::string_view repository, std::string_view tag,
    const imagegen::Image& image, std::string username = {}, Secret password = {}) {
  BERTH_ASSIGN_OR_RETURN(auto client,
                         imagegen::RegistryClient::Create({.base_url = std::string(base_url),
                                                           .username = std::move(username),
                                                           .password = std::move(password)}));
  return imagegen::PushImage(*client, repository, tag, image);
}

}  // namespace berth::service::testing
