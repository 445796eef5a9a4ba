// File: berth/config/config_keys.h
//
// The documentation of every config key ParseConfig() knows, as data: its path in berth's own
// spelling, the value it takes, its default, where containerd's config.toml has it, and what it
// does. berth-config(5) is generated from this table (cmd/berth-docgen), and
// config_keys_test.cc checks it against the parser both ways: every key the parser lists in its
// unknown-key errors is here, and every key here parses. So the manual cannot drift from the
// parser; a new key needs a row here or that test fails.
//
// Paths name tables and keys as a TOML file does; `<host>` stands for a registry host
// ("docker.io", "r.local:5000", or "*" in mirrors) and `<name>` for a header name.
#pragma once

#include <span>
#include <string_view>

namespace berth::config {

struct KeyDoc {
  // e.g. "pull.max_concurrent_downloads", "registry.configs.<host>.tls.ca_file".
  std::string_view path;
  // The value's syntax, e.g. "integer 1..1024", "duration", "\"always\" | \"never\"".
  std::string_view value;
  // The default as the file would spell it, or a sentence when it depends on other keys.
  std::string_view default_value;
  // A value that parses, as the file would spell it (TOML), for the manual and the tests.
  std::string_view example;
  // The same setting in a containerd config.toml (version 2 spelling), or "" when containerd
  // has none (berth's own keys).
  std::string_view containerd;
  // What the key does, in one or a few sentences.
  std::string_view description;
};

// Every documented key, in the order of the manual: top level, [pull], [registry], [peers].
std::span<const KeyDoc> KeyDocs();

}  // namespace berth::config
