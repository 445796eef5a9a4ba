// File: cmd/berth/commands.h
//
// The berth CLI's subcommands. Each Add*Command registers its options and callback on `app`;
// the callback stores the process exit status in `*status`. Commands only translate between
// the command line and library calls; they print results to stdout and errors to stderr as
// "error: <message>".
#pragma once

#include <CLI/CLI.hpp>

namespace berth::cli {

void AddRefCommand(CLI::App& app, int* status);
void AddPullCommand(CLI::App& app, int* status);
void AddContentCommand(CLI::App& app, int* status);
void AddMountCommands(CLI::App& app, int* status);        // mount and unmount
void AddImageCommands(CLI::App& app, int* status);        // images, inspect, rmi, fsinfo
void AddMaintenanceCommands(CLI::App& app, int* status);  // gc, check

}  // namespace berth::cli
