// File: testing/net_util.h
//
// Loopback networking helpers for test servers: picking ports, listening, connecting, and
// waiting until a server answers.
//
// Ports: servers written in this library (HttpServer, FaultProxy, TokenServer) listen on port 0
// and read the port the kernel chose, which cannot race. FreeLoopbackPort() is for external
// programs that must be told a port up front (the registry); the port is free when returned but
// another process could take it before the program binds it, so such callers retry on a new port
// when the program fails to bind (TestRegistry does).
//
// Thread safety: all functions may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"
#include "testing/http_fetch.h"

namespace berth::testing {

// Binds a TCP socket to 127.0.0.1:0, reads the port the kernel assigned, closes the socket and
// returns the port. Errors are errno errors from socket/bind/getsockname.
Result<uint16_t> FreeLoopbackPort();

// A listening TCP socket on 127.0.0.1 (close-on-exec) and the port it is bound to.
struct LoopbackListener {
  UniqueFd fd;
  uint16_t port = 0;
};

// Listens on 127.0.0.1:`port` (0 = any free port) with SO_REUSEADDR and the given backlog.
Result<LoopbackListener> ListenOnLoopback(uint16_t port = 0, int backlog = 128);
// The same on the IPv4 address `address` ("10.213.0.15"), in the calling thread's network
// namespace (net_namespace.h's RunInside for another one). kInvalidArgument for a bad address.
Result<LoopbackListener> ListenOnAddress(std::string_view address, uint16_t port = 0,
                                         int backlog = 128);

// Connects to host:port (numeric IPv4/IPv6 or a name resolved with getaddrinfo), waiting at most
// `timeout`. Returns the connected, close-on-exec socket, or kUnavailable / kDeadlineExceeded.
Result<UniqueFd> ConnectTcp(std::string_view host, uint16_t port,
                            std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Splits "host:port" or "[v6]:port". kInvalidArgument when there is no valid port.
Result<std::pair<std::string, uint16_t>> SplitHostPort(std::string_view host_port);

// Polls until a TCP connection to host:port succeeds or `timeout` passes (kDeadlineExceeded,
// with the last connection error in the message).
Result<void> WaitForTcp(std::string_view host, uint16_t port, std::chrono::milliseconds timeout);

// Polls `probe` (a URL plus TLS settings) until the server answers with any HTTP status, or
// `timeout` passes (kDeadlineExceeded with the last error). Each attempt uses a short timeout.
Result<void> WaitForHttp(const HttpFetchRequest& probe, std::chrono::milliseconds timeout);
// Same, for a plain URL with default TLS settings.
Result<void> WaitForHttp(std::string_view url, std::chrono::milliseconds timeout);

}  // namespace berth::testing
