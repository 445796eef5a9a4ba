#include "testing/http_server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <exception>

#include "testing/http_wire.h"

namespace berth::testing {
namespace {

std::string RenderResponse(const HttpServerResponse& response, bool head_only, bool close) {
  ResponseHead head{.version = "HTTP/1.1", .status = response.status, .headers = response.headers};
  RemoveHeader(head.headers, "Connection");
  RemoveHeader(head.headers, "Transfer-Encoding");
  bool no_body =
      head_only || response.status == 204 || response.status == 304 || response.status < 200;
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
                                                      const HttpServerOptions& options) {
  if (!handler) return Fail(ErrorCode::kInvalidArgument, "HttpServer needs a handler");
  auto server = std::unique_ptr<HttpServer>(new HttpServer(std::move(handler), options));
  BERTH_ASSIGN_OR_RETURN(
      server->tcp_, TcpServer::Start([raw = server.get()](
                                         int fd, const std::string& peer) { raw->Serve(fd, peer); },
                                     options.port, options.address));
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  stopping_.store(true);
  if (tcp_) tcp_->Stop();
}

std::string HttpServer::host() const { return tcp_->address() + ":" + std::to_string(port()); }

std::string HttpServer::url() const { return "http://" + host(); }

void HttpServer::Serve(int fd, const std::string& peer) {
  SocketReader reader(fd);
  // Answers an error and closes gracefully: the client may still be sending a body we will not
  // read, and closing with unread data would reset the connection and lose the answer.
  auto reply_and_close = [&](int status, std::string body) {
    ++requests_served_;
    (void)SendAll(fd, RenderResponse({.status = status, .body = std::move(body)}, false, true));
    ::shutdown(fd, SHUT_WR);
    timeval timeout{.tv_sec = 1, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    for (size_t drained = 0; drained < (size_t{8} << 20);) {
      Result<std::string> discarded = reader.ReadSome(64 * 1024);
      if (!discarded || discarded->empty()) break;
      drained += discarded->size();
    }
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
                              .peer = peer};
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
}

}  // namespace berth::testing
