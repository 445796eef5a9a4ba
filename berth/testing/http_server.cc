#include "berth/testing/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <exception>

#include "berth/testing/http_wire.h"
#include "berth/testing/net_util.h"

namespace berth::testing {
namespace {

std::string PeerName(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

std::string RenderResponse(const HttpServerResponse& response, bool head_only, bool close) {
  ResponseHead head{.version = "HTTP/1.1", .status = response.status, .headers = response.headers};
  RemoveHeader(head.headers, "Connection");
  RemoveHeader(head.headers, "Transfer-Encoding");
  bool no_body = head_only || response.status == 204 || response.status == 304 ||
                 response.status < 200;
  if (!FindHeader(head.headers, "Content-Length").has_value() && response.status != 204 &&
      response.status != 304) {
    head.headers.emplace_back("Content-Length", std::to_string(response.body.size()));
  }
  if (close) head.headers.emplace_back("Connection", "close");
  std::string out = SerializeResponseHead(head);
  if (!no_body) out += response.body;
  return out;
}

}  // namespace

std::vector<std::string> HttpServerRequest::QueryValues(std::string_view name) const {
  std::vector<std::string> values;
  for (auto& [key, value] : ParseQueryString(query)) {
    if (key == name) values.push_back(std::move(value));
  }
  return values;
}

std::optional<std::string> HttpServerRequest::QueryValue(std::string_view name) const {
  std::vector<std::string> values = QueryValues(name);
  if (values.empty()) return std::nullopt;
  return values.front();
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpHandler handler,
                                                      HttpServerOptions options) {
  if (!handler) return Fail(ErrorCode::kInvalidArgument, "HttpServer needs a handler");
  BERTH_ASSIGN_OR_RETURN(LoopbackListener listener, ListenOnLoopback(options.port));
  auto server = std::unique_ptr<HttpServer>(
      new HttpServer(std::move(handler), options, std::move(listener.fd), listener.port));
  if (!server->wake_fd_) return Fail(ErrnoError(errno, "eventfd"));
  server->accept_thread_ = std::thread([raw = server.get()] { raw->AcceptLoop(); });
  return server;
}

HttpServer::HttpServer(HttpHandler handler, HttpServerOptions options, UniqueFd listener,
                       uint16_t port)
    : handler_(std::move(handler)),
      options_(options),
      listener_(std::move(listener)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC)),
      port_(port) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::host() const { return "127.0.0.1:" + std::to_string(port_); }

std::string HttpServer::url() const { return "http://" + host(); }

void HttpServer::Stop() {
  // call_once: a concurrent second caller blocks until the first has joined everything.
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)ignored;
    if (accept_thread_.joinable()) accept_thread_.join();
    listener_.reset();
    std::list<std::unique_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& connection : connections_) ::shutdown(connection->fd.get(), SHUT_RDWR);
      connections.swap(connections_);
    }
    for (auto& connection : connections) {
      if (connection->thread.joinable()) connection->thread.join();
    }
  });
}

void HttpServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{.fd = listener_.get(), .events = POLLIN, .revents = 0},
                     {.fd = wake_fd_.get(), .events = POLLIN, .revents = 0}};
    int ready = ::poll(fds, 2, 1000);
    if (ready < 0 && errno != EINTR) break;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ReapFinishedLocked();
    }
    if (stopping_.load() || (fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    sockaddr_in address = {};
    socklen_t length = sizeof(address);
    int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length,
                       SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto connection = std::make_unique<Connection>();
    connection->fd.reset(fd);
    connection->peer = PeerName(address);
    Connection* raw = connection.get();
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_.load()) break;
    connections_.push_back(std::move(connection));
    raw->thread = std::thread([this, raw] { Serve(*raw); });
  }
}

void HttpServer::ReapFinishedLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void HttpServer::Serve(Connection& connection) {
  const int fd = connection.fd.get();
  SocketReader reader(fd);
  auto reply_and_close = [&](int status, std::string body) {
    ++requests_served_;
    (void)SendAll(fd, RenderResponse({.status = status, .body = std::move(body)}, false, true));
  };
  while (!stopping_.load()) {
    Result<std::optional<std::string>> head_text = reader.ReadHead();
    if (!head_text || !head_text->has_value()) break;
    Result<RequestHead> head = ParseRequestHead(**head_text);
    if (!head) {
      reply_and_close(400, head.error().message());
      break;
    }
    HttpServerRequest request{.method = head->method,
                              .target = head->target,
                              .version = head->version,
                              .headers = std::move(head->headers),
                              .peer = connection.peer};
    size_t question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) request.query = request.target.substr(question + 1);

    if (HasHeaderToken(request.headers, "Expect", "100-continue")) {
      if (!SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) break;
    }
    bool read_ok = true;
    if (HasHeaderToken(request.headers, "Transfer-Encoding", "chunked")) {
      Result<void> body = ReadChunkedBody(reader, [&](std::string_view piece) -> Result<void> {
        if (request.body.size() + piece.size() > options_.max_body_bytes) {
          return Fail(ErrorCode::kResourceExhausted, "request body too large");
        }
        request.body.append(piece);
        return Ok();
      });
      if (!body) {
        if (body.error().code() == ErrorCode::kResourceExhausted) reply_and_close(413, "");
        read_ok = false;
      }
    } else {
      Result<std::optional<uint64_t>> length = ContentLength(request.headers);
      if (!length) {
        reply_and_close(400, length.error().message());
        break;
      }
      if (length->value_or(0) > options_.max_body_bytes) {
        reply_and_close(413, "request body too large");
        break;
      }
      if (length->value_or(0) > 0) {
        Result<std::string> body = reader.ReadExactly(static_cast<size_t>(**length));
        if (body) {
          request.body = *std::move(body);
        } else {
          read_ok = false;
        }
      }
    }
    if (!read_ok) break;

    HttpServerResponse response;
    try {
      response = handler_(request);
    } catch (const std::exception& e) {
      response = {.status = 500, .body = std::string("handler threw: ") + e.what()};
    } catch (...) {
      response = {.status = 500, .body = "handler threw"};
    }
    ++requests_served_;
    bool close = !options_.keep_alive || request.version == "HTTP/1.0" ||
                 HasHeaderToken(request.headers, "Connection", "close");
    if (!SendAll(fd, RenderResponse(response, request.method == "HEAD", close))) break;
    if (close) break;
  }
  ::shutdown(fd, SHUT_RDWR);
  connection.done.store(true);
}

}  // namespace berth::testing
