// File: berth/peers/connection.h
//
// One accepted connection of the peer endpoint (blob_server.h), plain TCP or TLS over it, with
// the endpoint's two ways out of every wait: a deadline, and the server's stop signal (an
// eventfd that becomes readable). The socket is non-blocking; every read and write waits in
// poll() for the socket, the deadline or the stop, so a stopping server never waits on a peer.
//
// Content goes out with sendfile(2) over plain TCP (the bytes never enter user space) and
// through a 64 KiB buffer over TLS: never a whole blob in memory.
//
// Also here: the server's TLS context (MakeServerTlsContext), built once at start.
//
// Thread safety: a Connection is used by one thread at a time. The TLS context is shared by
// every connection (OpenSSL's SSL_CTX is safe for that once built).
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "berth/base/c_handle.h"
#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth::peers {

using UniqueSslContext = UniqueHandle<SSL_CTX, SSL_CTX_free>;
using UniqueSsl = UniqueHandle<SSL, SSL_free>;

struct ServerTlsFiles {
  std::string cert;       // PEM certificate chain, the server's first
  std::string key;        // PEM private key
  std::string client_ca;  // PEM CA bundle; "" for no client certificates
};

// A TLS 1.2+ server context with `files`' certificate and key; with a client CA, clients must
// present a certificate it signed (the handshake fails without one). kInvalidArgument naming the
// config key (peers.tls_cert, peers.tls_key, peers.tls_client_ca), the file and OpenSSL's
// reason when a file cannot be read or the key does not match the certificate.
Result<UniqueSslContext> MakeServerTlsContext(const ServerTlsFiles& files);

class Connection {
 public:
  using Clock = std::chrono::steady_clock;
  // The most a write of content holds in memory, and the step of the rate limiter.
  static constexpr size_t kChunkBytes = 64 << 10;

  // Takes `socket` (an accepted TCP socket), makes it non-blocking and, with `tls`, runs the
  // server side of the TLS handshake before `deadline`. `wake` (the server's stop eventfd) must
  // outlive the connection. Errors: kDeadlineExceeded, kCancelled (the server stops),
  // kUnavailable (the peer went away, or the handshake failed: a client without a certificate
  // the client CA signed, or one that does not speak TLS).
  static Result<std::unique_ptr<Connection>> Accept(UniqueFd socket, int wake, SSL_CTX* tls,
                                                    Clock::time_point deadline);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Reads what is available, up to buffer.size() bytes, waiting until `deadline` for something.
  // Returns the count, 0 when the peer closed the connection. Errors as Accept's.
  Result<size_t> Read(std::span<char> buffer, Clock::time_point deadline);

  // Writes all of `data`, waiting until `deadline` at most. Errors as Accept's.
  Result<void> Write(std::string_view data, Clock::time_point deadline);

  // Sends `length` bytes of `file` from `offset`, in chunks of at most kChunkBytes: before each,
  // waits what `pace` (the rate limiter; may be empty) says for that many bytes; each chunk must
  // go out within `stall_timeout` (a peer that stops reading is given up on). Adds each chunk
  // sent whole to `sent`, also when a later one fails. Errors as Accept's; an I/O error of
  // `file` is its ErrnoError, a file shorter than asked kDataLoss.
  Result<void> SendFile(int file, int64_t offset, int64_t length,
                        std::chrono::milliseconds stall_timeout,
                        const std::function<std::chrono::nanoseconds(uint64_t)>& pace,
                        uint64_t& sent);

  // Whether the server stops (its wake descriptor is readable), for a thread that waits on
  // something other than this connection.
  bool Stopping() const;

  // Ends the connection politely: TLS close_notify (best effort), a TCP half-close, then what
  // the peer still sends is read and dropped until it closes too or `deadline` passes (closing
  // with unread bytes would reset the connection and could destroy a refusal the peer has not
  // read yet).
  void Shutdown(Clock::time_point deadline);

 private:
  Connection(UniqueFd socket, int wake) : socket_(std::move(socket)), wake_(wake) {}

  // Waits until the socket is ready for `events`. kOk, or the errors of Accept.
  Result<void> WaitFor(short events, Clock::time_point deadline) const;
  // Waits `duration` unless the server stops (kCancelled).
  Result<void> Pause(std::chrono::nanoseconds duration) const;
  // Runs an OpenSSL call on ssl_ until it makes progress, waiting for the socket as it asks.
  // Returns its positive result, or 0 on a clean TLS close.
  Result<int> RunSsl(const std::function<int()>& call, Clock::time_point deadline,
                     std::string_view what);
  Result<void> SendFilePlain(int file, int64_t offset, size_t count, Clock::time_point deadline);

  UniqueFd socket_;
  const int wake_;
  UniqueSsl ssl_;
};

}  // namespace berth::peers
