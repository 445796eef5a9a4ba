#include "berth/metrics/http_server.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "berth/base/log.h"
#include "berth/base/tcp_listen.h"

namespace berth::metrics {
namespace {

using Clock = std::chrono::steady_clock;

// What poll() saw before the deadline.
enum class Wait { kReady, kStopped, kTimedOut };

// Waits until `fd` is ready for `events`, `wake` is readable (stop), or `deadline` passes.
Wait WaitFor(int fd, short events, int wake, Clock::time_point deadline) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Wait::kTimedOut;
    pollfd fds[2] = {{.fd = fd, .events = events, .revents = 0},
                     {.fd = wake, .events = POLLIN, .revents = 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Wait::kTimedOut;
    if (fds[1].revents != 0) return Wait::kStopped;
    if (fds[0].revents != 0) return Wait::kReady;
  }
}

// Writes all of `data` before `deadline`; false when it could not.
bool WriteAll(int fd, std::string_view data, int wake, Clock::time_point deadline) {
  while (!data.empty()) {
    if (WaitFor(fd, POLLOUT, wake, deadline) != Wait::kReady) return false;
    const ssize_t written = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (written <= 0) return false;
    data.remove_prefix(static_cast<size_t>(written));
  }
  return true;
}

std::string Response(int status, std::string_view reason, std::string_view content_type,
                     std::string_view body, bool head_only, std::string_view extra_headers = {}) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
      status, reason, content_type, body.size(), extra_headers);
  if (!head_only) out += body;
  return out;
}

std::string PlainResponse(int status, std::string_view reason, std::string_view message,
                          std::string_view extra_headers = {}) {
  return Response(status, reason, "text/plain; charset=utf-8", std::string(message) + "\n",
                  /*head_only=*/false, extra_headers);
}

// Reads the request head (through the blank line) into `head`. Returns the status to answer
// with when it cannot (400, 431), 0 when the head arrived, -1 when the connection should just
// close (timeout, stop, peer gone).
int ReadHead(int fd, int wake, Clock::time_point deadline, std::string& head) {
  char buffer[2048];
  while (head.find("\r\n\r\n") == std::string::npos && head.find("\n\n") == std::string::npos) {
    if (head.size() > MetricsServer::kMaxRequestBytes) return 431;
    if (WaitFor(fd, POLLIN, wake, deadline) != Wait::kReady) return -1;
    const ssize_t got = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) return head.empty() ? -1 : 400;
    head.append(buffer, static_cast<size_t>(got));
  }
  return head.size() > MetricsServer::kMaxRequestBytes ? 431 : 0;
}

// The response to the request whose head is `head`.
std::string Answer(std::string_view head, const Registry& registry) {
  const std::string_view line = head.substr(0, head.find_first_of("\r\n"));
  const size_t first_space = line.find(' ');
  const size_t second_space =
      first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos ||
      !line.substr(second_space + 1).starts_with("HTTP/1.")) {
    return PlainResponse(400, "Bad Request", "malformed request line");
  }
  const std::string_view method = line.substr(0, first_space);
  std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  target = target.substr(0, target.find('?'));
  if (target != kMetricsPath) {
    return PlainResponse(404, "Not Found",
                         fmt::format("not found; metrics are served at {}", kMetricsPath));
  }
  if (method != "GET" && method != "HEAD") {
    return PlainResponse(405, "Method Not Allowed", "only GET and HEAD are allowed",
                         "Allow: GET, HEAD\r\n");
  }
  return Response(200, "OK", kExpositionContentType, registry.Render(), method == "HEAD");
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const Registry& registry,
                                                            const MetricsServerOptions& options) {
  BERTH_ASSIGN_OR_RETURN(UniqueFd listener, ListenTcp(options.address, "metrics_address"));
  const uint16_t port = LocalPort(listener.get());
  std::unique_ptr<MetricsServer> server(new MetricsServer(registry, port, options.timeout));
  BERTH_ASSIGN_OR_RETURN(
      server->loop_,
      AcceptLoop::Start(
          std::move(listener), kMaxConnections,
          {.serve = [raw = server.get()](UniqueFd connection,
                                         int wake) { raw->Serve(std::move(connection), wake); },
           .refuse =
               [](int connection) {
                 // Busy: say so without waiting for the client.
                 const std::string busy =
                     PlainResponse(503, "Service Unavailable", "too many scrapes");
                 [[maybe_unused]] ssize_t sent =
                     ::send(connection, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
               }}));
  return server;
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (loop_) loop_->Stop();
}

void MetricsServer::Serve(UniqueFd connection, int wake) {
  const Clock::time_point deadline = Clock::now() + timeout_;
  std::string head;
  const int refused = ReadHead(connection.get(), wake, deadline, head);
  std::string response;
  if (refused == 400) {
    response = PlainResponse(400, "Bad Request", "malformed request");
  } else if (refused == 431) {
    response = PlainResponse(431, "Request Header Fields Too Large", "request head too large");
  } else if (refused == 0) {
    response = Answer(head, registry_);
  }
  if (!response.empty()) WriteAll(connection.get(), response, wake, deadline);
  ::shutdown(connection.get(), SHUT_WR);
}

}  // namespace berth::metrics
