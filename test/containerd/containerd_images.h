// File: test/containerd/containerd_images.h
//
// The images the containerd end-to-end tests run, built with imagegen and pushed to a
// TestRegistry that containerd reaches under the name kRegistryHost (ContainerdOptions's
// registry_hosts map it to the registry's loopback URL):
//
//   busybox  layer 1: /bin/busybox (Debian's busybox-static) with a hard link per applet, and
//            the directories a container needs (/proc, /dev, /sys, /tmp, /etc);
//            layer 2: kKnownFilePath holding kKnownFileContent.  Cmd ["/bin/sh"], PATH=/bin.
//   pause    /pause, a static C program (pause.c) that waits for SIGTERM/SIGINT and exits 0.
//            Entrypoint ["/pause"]. The CRI's sandbox image.
//
// Also what the tests read in a registry's log (BlobFetchers).
//
// Thread safety: free functions; they read files and block on the registry.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/digest/digest.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/push.h"

namespace berth::containerd_test {

// The registry name images are pulled by; no such host exists, only its hosts.toml entry.
inline constexpr std::string_view kRegistryHost = "registry.berth.test";
inline constexpr std::string_view kKnownFilePath = "/etc/berth/known.txt";
inline constexpr std::string_view kKnownFileContent = "known data from the busybox image\n";

// Builds the busybox image from `busybox` (a static busybox binary). kNotFound if it is missing
// (install busybox-static); errors from running `busybox --list` or from imagegen.
Result<imagegen::Image> MakeBusyboxImage(const std::filesystem::path& busybox = "/bin/busybox");

// Builds the pause image from the static binary at `pause_binary`.
Result<imagegen::Image> MakePauseImage(const std::filesystem::path& pause_binary);

// Pushes `image` to `registry_url` (http://127.0.0.1:PORT) as repository:tag.
Result<imagegen::PushedImage> PushImage(std::string_view registry_url, std::string_view repository,
                                        std::string_view tag, const imagegen::Image& image);

// "<kRegistryHost>/<repository>:<tag>", the name containerd pulls.
std::string ImageName(std::string_view repository, std::string_view tag);

// The user agents ("berth/0.1", "containerd/1.6.20~ds1") of the GETs of the blob `digest` in a
// registry's access log `log` (lines like
// `... "GET /v2/<name>/blobs/<digest>[?ns=…] HTTP/1.1" 200 <size> "" "<agent>"`): who fetched it.
std::vector<std::string> BlobFetchers(const std::string& log, const Digest& digest);

}  // namespace berth::containerd_test
