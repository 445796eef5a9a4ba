// The berth CLI's subcommands. Each Add*Command registers its options and callback on `app`;
// the callback stores the process exit status in `*status`. Commands only translate between
// the command line and library calls; they print results to stdout and errors to stderr as
// "error: <message>".
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

#include "berth/base/result.h"
#include "berth/config/config.h"
#include "berth/metadata/metadata_db.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::cli {

void AddRefCommand(CLI::App& app, int* status);
void AddPullCommand(CLI::App& app, int* status);
void AddContentCommand(CLI::App& app, int* status);
void AddMountCommands(CLI::App& app, int* status);  // mount and unmount

// Shared by pull and mount (mount_command.cc): the snapshotter `kind` under
// <root>/snapshots/<name>/ with its metadata in <root>/metadata.db, and the image records there.
Result<std::unique_ptr<snapshot::Snapshotter>> OpenSnapshotter(const config::Config& config,
                                                               config::SnapshotterKind kind);
Result<std::unique_ptr<metadata::MetadataDb>> OpenMetadata(const config::Config& config);

}  // namespace berth::cli
