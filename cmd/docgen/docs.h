// File: cmd/docgen/docs.h
//
// The operator documentation berth installs, written from the definitions the programs run
// with, so it cannot drift from them: the manual pages berth(1) and berthd(8) from the CLI11
// apps that parse their command lines (cmd/berth/app.h, cmd/berthd/flags.h), berth-config(5)
// from config::KeyDocs() (checked against the config parser by its test), and the bash
// completion of berth from the same app. The build runs berth-docgen (main.cc) to write them;
// nothing here runs in berth or berthd.
//
// Manual pages are man(7) roff: each text is escaped (backslashes, leading dots and quotes,
// hyphens in option names), so a description can say anything.
#pragma once

#include <CLI/CLI.hpp>
#include <set>
#include <string>
#include <string_view>

namespace berth::docgen {

// What a page says about its program beyond the app's own text.
struct PageInfo {
  std::string_view section;      // "1", "8"
  std::string_view manual;       // "User Commands", "System Administration"
  std::string_view description;  // paragraphs (separated by a blank line), roff-escaped here
  std::string_view files;        // the FILES section's paragraphs, or ""
  std::string_view see_also;     // e.g. "berth-config(5), berthd(8)"
};

// A manual page for `app`: NAME, SYNOPSIS, DESCRIPTION, OPTIONS, one subsection per subcommand
// (nested ones as "berth content ls") with its arguments and options, FILES, SEE ALSO.
std::string ManPage(const CLI::App& app, const PageInfo& info);

// berth-config(5): every key of config::KeyDocs() with its value, default, example and
// containerd spelling, grouped by table.
std::string ConfigManPage();

// A bash completion script for `app` (complete -F): subcommands, their options, the global
// options, files and directories for the options and arguments that take them, and for the
// commands named in `stored_image_commands` (e.g. inspect, rmi, mount) the names of the stored
// images, from `<program> [the global options typed] images --names`.
std::string BashCompletion(const CLI::App& app, const std::set<std::string>& stored_image_commands);

// `text` made safe as man(7) running text.
std::string RoffEscape(std::string_view text);

}  // namespace berth::docgen
