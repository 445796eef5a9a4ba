#include "berth/peers/connection.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace berth::peers {
namespace {

// OpenSSL's error queue as text (and cleared): "reason; reason".
std::string OpenSslErrors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? std::string("no detail from OpenSSL") : text;
}

Error TlsFileError(std::string_view key, const std::string& path, std::string_view what) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{} {}: {}: {}", key, path, what, OpenSslErrors()));
}

}  // namespace

Result<UniqueSslContext> MakeServerTlsContext(const ServerTlsFiles& files) {
  ERR_clear_error();
  UniqueSslContext context(SSL_CTX_new(TLS_server_method()));
  if (!context) {
    return Fail(ErrorCode::kInternal, "peers: cannot make a TLS context: " + OpenSslErrors());
  }
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(context.get(), files.cert.c_str()) != 1) {
    return Fail(TlsFileError("peers.tls_cert", files.cert, "cannot load the certificate chain"));
  }
  if (SSL_CTX_use_PrivateKey_file(context.get(), files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Fail(TlsFileError("peers.tls_key", files.key, "cannot load the private key"));
  }
  if (SSL_CTX_check_private_key(context.get()) != 1) {
    return Fail(TlsFileError("peers.tls_key", files.key,
                             "does not match the certificate of peers.tls_cert"));
  }
  if (!files.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(context.get(), files.client_ca.c_str(), nullptr) != 1) {
      return Fail(TlsFileError("peers.tls_client_ca", files.client_ca, "cannot load the CA"));
    }
    // The CA's name goes in the CertificateRequest, so a client holding several certificates
    // picks the right one.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str())) {
      SSL_CTX_set_client_CA_list(context.get(), names);
    }
    SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // A client resuming a session must find its verified certificate's session again.
    constexpr std::string_view kSessionContext = "berth-peers";
    SSL_CTX_set_session_id_context(context.get(),
                                   reinterpret_cast<const unsigned char*>(kSessionContext.data()),
                                   static_cast<unsigned>(kSessionContext.size()));
  }
  return context;
}

Result<std::unique_ptr<Connection>> Connection::Accept(UniqueFd socket, int wake, SSL_CTX* tls,
                                                       Clock::time_point deadline) {
  const int flags = ::fcntl(socket.get(), F_GETFL);
  if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return Fail(ErrnoError(errno, "peers: make a connection non-blocking"));
  }
  std::unique_ptr<Connection> connection(new Connection(std::move(socket), wake));
  if (tls == nullptr) return connection;
  connection->ssl_.reset(SSL_new(tls));
  if (!connection->ssl_ || SSL_set_fd(connection->ssl_.get(), connection->socket_.get()) != 1) {
    return Fail(ErrorCode::kInternal, "peers: cannot start TLS: " + OpenSslErrors());
  }
  SSL* ssl = connection->ssl_.get();
  BERTH_ASSIGN_OR_RETURN(const int accepted, connection->RunSsl([ssl] { return SSL_accept(ssl); },
                                                                deadline, "TLS handshake"));
  if (accepted <= 0) {
    return Fail(ErrorCode::kUnavailable, "peers: the peer closed during the TLS handshake");
  }
  return connection;
}

Connection::~Connection() = default;

Result<void> Connection::WaitFor(short events, Clock::time_point deadline) const {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Fail(ErrorCode::kDeadlineExceeded, "peers: connection timed out");
    pollfd fds[2] = {{.fd = socket_.get(), .events = events, .revents = 0},
                     {.fd = wake_, .events = POLLIN, .revents = 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Fail(ErrnoError(errno, "peers: poll"));
    if (fds[1].revents != 0) return Fail(ErrorCode::kCancelled, "peers: the server stops");
    if (fds[0].revents != 0) return Ok();
  }
}

bool Connection::Stopping() const {
  pollfd stop{.fd = wake_, .events = POLLIN, .revents = 0};
  return ::poll(&stop, 1, 0) > 0;
}

Result<void> Connection::Pause(std::chrono::nanoseconds duration) const {
  if (duration.count() <= 0) return Ok();
  const auto deadline = Clock::now() + duration;
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Ok();
    pollfd stop{.fd = wake_, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&stop, 1, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (ready > 0) return Fail(ErrorCode::kCancelled, "peers: the server stops");
  }
}

Result<int> Connection::RunSsl(const std::function<int()>& call, Clock::time_point deadline,
                               std::string_view what) {
  while (true) {
    ERR_clear_error();
    const int result = call();
    if (result > 0) return result;
    switch (SSL_get_error(ssl_.get(), result)) {
      case SSL_ERROR_WANT_READ:
        BERTH_RETURN_IF_ERROR(WaitFor(POLLIN, deadline));
        continue;
      case SSL_ERROR_WANT_WRITE:
        BERTH_RETURN_IF_ERROR(WaitFor(POLLOUT, deadline));
        continue;
      case SSL_ERROR_ZERO_RETURN:
        return 0;
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
          // The peer closed the TCP connection without a close_notify (or reset it).
          if (result == 0 || errno == ECONNRESET || errno == EPIPE) return 0;
        }
        [[fallthrough]];
      default:
        return Fail(ErrorCode::kUnavailable, fmt::format("peers: {}: {}", what, OpenSslErrors()));
    }
  }
}

Result<size_t> Connection::Read(std::span<char> buffer, Clock::time_point deadline) {
  if (ssl_) {
    SSL* ssl = ssl_.get();
    BERTH_ASSIGN_OR_RETURN(
        const int got,
        RunSsl([&] { return SSL_read(ssl, buffer.data(), static_cast<int>(buffer.size())); },
               deadline, "TLS read"));
    return static_cast<size_t>(got);
  }
  while (true) {
    const ssize_t got = ::recv(socket_.get(), buffer.data(), buffer.size(), 0);
    if (got >= 0) return static_cast<size_t>(got);
    if (errno == ECONNRESET) return 0;
    if (errno != EAGAIN && errno != EINTR) return Fail(ErrnoError(errno, "peers: recv"));
    BERTH_RETURN_IF_ERROR(WaitFor(POLLIN, deadline));
  }
}

Result<void> Connection::Write(std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    if (ssl_) {
      SSL* ssl = ssl_.get();
      const int size = static_cast<int>(std::min<size_t>(data.size(), 1 << 30));
      BERTH_ASSIGN_OR_RETURN(
          const int written,
          RunSsl([&] { return SSL_write(ssl, data.data(), size); }, deadline, "TLS write"));
      if (written == 0) return Fail(ErrorCode::kUnavailable, "peers: the peer closed");
      data.remove_prefix(static_cast<size_t>(written));
      continue;
    }
    const ssize_t written = ::send(socket_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (written > 0) {
      data.remove_prefix(static_cast<size_t>(written));
    } else if (written < 0 && (errno == EAGAIN || errno == EINTR)) {
      BERTH_RETURN_IF_ERROR(WaitFor(POLLOUT, deadline));
    } else {
      return Fail(ErrorCode::kUnavailable, "peers: the peer closed");
    }
  }
  return Ok();
}

Result<void> Connection::SendFilePlain(int file, int64_t offset, size_t count,
                                       Clock::time_point deadline) {
  off_t position = offset;
  while (count > 0) {
    const ssize_t written = ::sendfile(socket_.get(), file, &position, count);
    if (written > 0) {
      count -= static_cast<size_t>(written);
    } else if (written == 0) {
      return Fail(ErrorCode::kDataLoss, "peers: the blob ended early (removed meanwhile?)");
    } else if (errno == EAGAIN || errno == EINTR) {
      BERTH_RETURN_IF_ERROR(WaitFor(POLLOUT, deadline));
    } else if (errno == EPIPE || errno == ECONNRESET) {
      return Fail(ErrorCode::kUnavailable, "peers: the peer closed");
    } else {
      return Fail(ErrnoError(errno, "peers: sendfile"));
    }
  }
  return Ok();
}

Result<void> Connection::SendFile(int file, int64_t offset, int64_t length,
                                  std::chrono::milliseconds stall_timeout,
                                  const std::function<std::chrono::nanoseconds(uint64_t)>& pace,
                                  uint64_t& sent) {
  std::vector<char> buffer(ssl_ ? kChunkBytes : 0);
  while (length > 0) {
    const size_t chunk = static_cast<size_t>(std::min<int64_t>(length, kChunkBytes));
    if (pace) BERTH_RETURN_IF_ERROR(Pause(pace(chunk)));
    const Clock::time_point deadline = Clock::now() + stall_timeout;
    if (ssl_) {
      const ssize_t got = ::pread(file, buffer.data(), chunk, offset);
      if (got < 0) return Fail(ErrnoError(errno, "peers: read blob"));
      if (static_cast<size_t>(got) != chunk) {
        return Fail(ErrorCode::kDataLoss, "peers: the blob ended early (removed meanwhile?)");
      }
      BERTH_RETURN_IF_ERROR(Write(std::string_view(buffer.data(), chunk), deadline));
    } else {
      BERTH_RETURN_IF_ERROR(SendFilePlain(file, offset, chunk, deadline));
    }
    offset += static_cast<int64_t>(chunk);
    length -= static_cast<int64_t>(chunk);
    sent += chunk;
  }
  return Ok();
}

void Connection::Shutdown(Clock::time_point deadline) {
  if (ssl_) {
    ERR_clear_error();
    SSL_shutdown(ssl_.get());  // non-blocking: one attempt at close_notify
  }
  ::shutdown(socket_.get(), SHUT_WR);
  // Drained from the socket itself: after close_notify OpenSSL reads no more application data.
  char discard[4096];
  for (size_t drained = 0; drained < (1 << 20);) {
    if (!WaitFor(POLLIN, deadline)) return;
    const ssize_t got = ::recv(socket_.get(), discard, sizeof(discard), 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) return;
    drained += static_cast<size_t>(got);
  }
}

}  // namespace berth::peers
