// File: berth/base/tcp_listen.h
//
// The TCP listening sockets berthd's own servers open on a configured "host:port" (the metrics
// endpoint, metrics_address; the peer endpoint, peers.listen): the address parsed, resolved,
// bound and listened on, with errors that name the config key.
//
// Thread safety: pure functions and system calls; callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth {

// Splits "host:port" ("[v6]:port" for IPv6 literals; an empty host means every address).
// Errors: kInvalidArgument naming `address` and what is wrong with it.
Result<std::pair<std::string, uint16_t>> ParseHostPort(std::string_view address);

// Resolves `address` (ParseHostPort's form; port 0 picks a free port) and listens on the first
// of its addresses that can be bound, close-on-exec, with SO_REUSEADDR. `key` is the config key
// the address came from, named in every error. Errors: kInvalidArgument for an address that is
// not host:port or a host that does not resolve; when no address can be bound (in use, not
// local), ErrnoError's code, naming the address and the key. Blocks on DNS for a host name.
Result<UniqueFd> ListenTcp(std::string_view address, std::string_view key, int backlog = 16);

// The local port of the bound socket `fd`, or 0 when it cannot be read.
uint16_t LocalPort(int fd);

}  // namespace berth
