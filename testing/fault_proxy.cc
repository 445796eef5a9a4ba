#include "testing/fault_proxy.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "testing/http_wire.h"
#include "testing/net_util.h"

namespace berth::testing {
namespace {

constexpr size_t kPieceBytes = 64 * 1024;

std::string PathOf(const std::string& target) { return target.substr(0, target.find('?')); }

std::string CannedResponse(int status, HeaderList headers, const std::string& body, bool head_only,
                           bool close) {
  ResponseHead head{.version = "HTTP/1.1", .status = status, .headers = std::move(headers)};
  RemoveHeader(head.headers, "Connection");
  RemoveHeader(head.headers, "Content-Length");
  RemoveHeader(head.headers, "Transfer-Encoding");
  head.headers.emplace_back("Content-Length", std::to_string(body.size()));
  if (close) head.headers.emplace_back("Connection", "close");
  return SerializeResponseHead(head) + (head_only ? "" : body);
}

}  // namespace

FaultAction FaultAction::Respond(int status, HeaderList headers, std::string body) {
  return {.respond_status = status,
          .respond_headers = std::move(headers),
          .respond_body = std::move(body)};
}

FaultAction FaultAction::RespondWithRetryAfter(int status, int retry_after_seconds) {
  return Respond(status, {{"Retry-After", std::to_string(retry_after_seconds)}});
}

FaultAction FaultAction::Delay(std::chrono::milliseconds delay) { return {.delay = delay}; }

FaultAction FaultAction::DropAfterBytes(uint64_t bytes) { return {.drop_after_bytes = bytes}; }

FaultAction FaultAction::CorruptByteAt(uint64_t offset) { return {.corrupt_byte_at = offset}; }

FaultAction FaultAction::SlowDrip(size_t bytes_per_piece, std::chrono::milliseconds interval) {
  return {.drip_bytes = bytes_per_piece, .drip_interval = interval};
}

FaultAction FaultAction::CloseWithoutResponse() { return {.close_without_response = true}; }

FaultAction FaultAction::StallAfterBytes(uint64_t bytes) { return {.stall_after_bytes = bytes}; }

Result<std::unique_ptr<FaultProxy>> FaultProxy::Start(std::string upstream,
                                                      FaultProxyOptions options) {
  BERTH_ASSIGN_OR_RETURN(auto host_port, SplitHostPort(upstream));
  auto proxy = std::unique_ptr<FaultProxy>(
      new FaultProxy(std::move(host_port.first), host_port.second, options));
  BERTH_ASSIGN_OR_RETURN(
      proxy->tcp_,
      TcpServer::Start([raw = proxy.get()](int fd, const std::string&) { raw->Serve(fd); }));
  return proxy;
}

FaultProxy::FaultProxy(std::string upstream_host, uint16_t upstream_port, FaultProxyOptions options)
    : upstream_(upstream_host + ":" + std::to_string(upstream_port)),
      upstream_host_(std::move(upstream_host)),
      upstream_port_(upstream_port),
      options_(options) {}

FaultProxy::~FaultProxy() { Stop(); }

void FaultProxy::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (int fd : upstream_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  stop_signal_.notify_all();
  if (tcp_) tcp_->Stop();
}

std::string FaultProxy::host() const { return "127.0.0.1:" + std::to_string(port()); }

std::string FaultProxy::url() const { return "http://" + host(); }

Result<int> FaultProxy::AddRule(FaultRule rule) {
  if (rule.first < 1 || rule.count < 0) {
    return Fail(ErrorCode::kInvalidArgument, "FaultRule needs first >= 1 and count >= 0");
  }
  std::optional<std::regex> regex;
  if (!rule.target_regex.empty()) {
    try {
      regex.emplace(rule.target_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return Fail(ErrorCode::kInvalidArgument,
                  "bad target_regex \"" + rule.target_regex + "\": " + e.what());
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  int id = next_rule_id_++;
  rules_.push_back({.id = id, .spec = std::move(rule), .regex = std::move(regex)});
  return id;
}

void FaultProxy::RemoveRule(int id) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (it->id == id) {
      removed_rule_counts_[id] = {it->matches, it->hits};
      rules_.erase(it);
      return;
    }
  }
}

void FaultProxy::ClearRules() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Rule& rule : rules_) removed_rule_counts_[rule.id] = {rule.matches, rule.hits};
  rules_.clear();
}

uint64_t FaultProxy::RuleMatches(int id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Rule& rule : rules_) {
    if (rule.id == id) return rule.matches;
  }
  auto it = removed_rule_counts_.find(id);
  return it == removed_rule_counts_.end() ? 0 : it->second.first;
}

uint64_t FaultProxy::RuleHits(int id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Rule& rule : rules_) {
    if (rule.id == id) return rule.hits;
  }
  auto it = removed_rule_counts_.find(id);
  return it == removed_rule_counts_.end() ? 0 : it->second.second;
}

uint64_t FaultProxy::RequestCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return log_.size();
}

uint64_t FaultProxy::RequestCount(std::string_view method, std::string_view target_contains) const {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t count = 0;
  for (const auto& [sequence, request] : log_) {
    if ((method.empty() || request.method == method) &&
        request.target.find(target_contains) != std::string::npos) {
      ++count;
    }
  }
  return count;
}

std::map<std::string, uint64_t> FaultProxy::RequestsPerPath() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, uint64_t> counts;
  for (const auto& [sequence, request] : log_)
    ++counts[request.method + " " + PathOf(request.target)];
  return counts;
}

std::vector<ProxiedRequest> FaultProxy::requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ProxiedRequest> result;
  for (const auto& [sequence, request] : log_) result.push_back(request);
  return result;
}

uint64_t FaultProxy::BodyBytesSent(std::string_view method,
                                   std::string_view target_contains) const {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t bytes = 0;
  for (const auto& [sequence, request] : log_) {
    if ((method.empty() || request.method == method) &&
        request.target.find(target_contains) != std::string::npos) {
      bytes += request.body_bytes_sent;
    }
  }
  return bytes;
}

std::string FaultProxy::DescribeRequests() const {
  std::string out;
  for (const ProxiedRequest& request : requests()) {
    out += fmt::format("  {} {} -> {} ({} bytes, rule {})\n", request.method, request.target,
                       request.status, request.body_bytes_sent, request.rule_id);
  }
  return out;
}

void FaultProxy::ResetCounters() {
  std::lock_guard<std::mutex> lock(mutex_);
  log_.clear();
  progress_events_.clear();
}

uint64_t FaultProxy::MaxConcurrentRequests(std::string_view method,
                                           std::string_view target_contains) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::set<uint64_t> running;
  uint64_t most = 0;
  for (const auto& [sequence, starts] : progress_events_) {
    if (!starts) {
      running.erase(sequence);
      continue;
    }
    auto it = log_.find(sequence);
    if (it == log_.end()) continue;
    const ProxiedRequest& request = it->second;
    if ((method.empty() || request.method == method) &&
        request.target.find(target_contains) != std::string::npos) {
      running.insert(sequence);
      most = std::max<uint64_t>(most, running.size());
    }
  }
  return most;
}

void FaultProxy::RecordFinished(uint64_t sequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  progress_events_.emplace_back(sequence, false);
}

uint64_t FaultProxy::Admit(const std::string& method, const std::string& target,
                           std::optional<FaultAction>& action, int& rule_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  rule_id = 0;
  for (Rule& rule : rules_) {
    if (!rule.spec.method.empty() && rule.spec.method != method) continue;
    if (!rule.spec.target_contains.empty() &&
        target.find(rule.spec.target_contains) == std::string::npos) {
      continue;
    }
    if (rule.regex.has_value() && !std::regex_search(target, *rule.regex)) continue;
    uint64_t number = ++rule.matches;
    bool in_window =
        number >= static_cast<uint64_t>(rule.spec.first) &&
        (rule.spec.count == 0 || number < static_cast<uint64_t>(rule.spec.first + rule.spec.count));
    if (in_window && rule_id == 0) {
      ++rule.hits;
      rule_id = rule.id;
      action = rule.spec.action;
    }
  }
  uint64_t sequence = next_sequence_++;
  log_[sequence] = {.method = method, .target = target, .rule_id = rule_id};
  progress_events_.emplace_back(sequence, true);
  return sequence;
}

void FaultProxy::Record(uint64_t sequence, int status, uint64_t body_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = log_.find(sequence);
  if (it == log_.end()) return;  // ResetCounters() ran meanwhile
  it->second.status = status;
  it->second.body_bytes_sent = body_bytes;
}

void FaultProxy::RecordClientGone(uint64_t sequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = log_.find(sequence);
  if (it != log_.end()) it->second.client_gone = true;
}

bool FaultProxy::Sleep(std::chrono::milliseconds duration) {
  std::unique_lock<std::mutex> lock(mutex_);
  return !stop_signal_.wait_for(lock, duration, [this] { return stopping_; });
}

void FaultProxy::TrackUpstream(int fd, bool add) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!add) {
    upstream_fds_.erase(fd);
    return;
  }
  upstream_fds_.insert(fd);
  if (stopping_) ::shutdown(fd, SHUT_RDWR);
}

namespace {

// Sends a response body to the client while applying the body faults of an action.
class BodyPump {
 public:
  // `sleep` waits (false when the proxy stops); `progress` is told the new byte total before
  // bytes are sent, so counters are final by the time the client has read them.
  BodyPump(int fd, const FaultAction& action, bool chunked,
           std::function<bool(std::chrono::milliseconds)> sleep,
           std::function<void(uint64_t)> progress)
      : fd_(fd),
        action_(action),
        chunked_(chunked),
        sleep_(std::move(sleep)),
        progress_(std::move(progress)) {}

  // True when the drop point was reached before any byte (drop_after_bytes = 0).
  bool DropsImmediately() const { return action_.drop_after_bytes == uint64_t{0}; }

  // Sends `data`. Returns false when the client connection must end now (drop point reached,
  // client gone, proxy stopping).
  bool Write(std::string_view data) {
    bool stall_now = false;
    if (action_.stall_after_bytes.has_value()) {
      uint64_t allowed = *action_.stall_after_bytes - std::min(*action_.stall_after_bytes, sent_);
      if (data.size() > allowed) {
        data = data.substr(0, static_cast<size_t>(allowed));
        stall_now = true;
      }
    }
    bool drop_now = false;
    if (action_.drop_after_bytes.has_value()) {
      uint64_t allowed = *action_.drop_after_bytes - std::min(*action_.drop_after_bytes, sent_);
      if (data.size() >= allowed) {
        data = data.substr(0, static_cast<size_t>(allowed));
        drop_now = true;
      }
    }
    std::string corrupted;
    if (action_.corrupt_byte_at.has_value() && *action_.corrupt_byte_at >= sent_ &&
        *action_.corrupt_byte_at < sent_ + data.size()) {
      corrupted = std::string(data);
      corrupted[static_cast<size_t>(*action_.corrupt_byte_at - sent_)] ^= static_cast<char>(0xff);
      data = corrupted;
    }
    size_t piece_size = action_.drip_bytes > 0 ? action_.drip_bytes : data.size();
    while (!data.empty()) {
      std::string_view piece = data.substr(0, piece_size);
      if (action_.drip_interval.count() > 0 && !sleep_(action_.drip_interval)) return false;
      sent_ += piece.size();
      progress_(sent_);
      if (!Send(piece)) return false;
      data.remove_prefix(piece.size());
    }
    if (stall_now) {
      Stall();
      return false;
    }
    return !drop_now;
  }

  // Ends a chunked body.
  bool Finish() { return !chunked_ || SendAll(fd_, "0\r\n\r\n").has_value(); }

  uint64_t sent() const { return sent_; }

  // Holds the connection open, sending nothing, until the client closes it or the proxy stops.
  void Stall() {
    while (sleep_(std::chrono::milliseconds(20))) {
      char byte;
      ssize_t peeked = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (peeked == 0 ||
          (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        return;  // closed by the client
      }
    }
  }
  // True once a write to the client has failed.
  bool client_gone() const { return client_gone_; }

 private:
  bool Send(std::string_view piece) {
    bool sent = false;
    if (!chunked_) {
      sent = SendAll(fd_, piece).has_value();
    } else {
      char size_line[32];
      std::snprintf(size_line, sizeof(size_line), "%zx\r\n", piece.size());
      sent = SendAll(fd_, std::string(size_line) + std::string(piece) + "\r\n").has_value();
    }
    if (!sent) client_gone_ = true;
    return sent;
  }

  int fd_;
  const FaultAction& action_;
  bool chunked_;
  std::function<bool(std::chrono::milliseconds)> sleep_;
  std::function<void(uint64_t)> progress_;
  uint64_t sent_ = 0;
  bool client_gone_ = false;
};

}  // namespace

void FaultProxy::Serve(int fd) {
  SocketReader client(fd);
  while (true) {
    Result<std::optional<std::string>> head_text = client.ReadHead();
    if (!head_text || !head_text->has_value()) return;
    Result<RequestHead> head = ParseRequestHead(**head_text);
    if (!head) {
      (void)SendAll(fd, CannedResponse(400, {}, head.error().message(), false, true));
      return;
    }
    const bool client_close =
        head->version == "HTTP/1.0" || HasHeaderToken(head->headers, "Connection", "close");
    if (HasHeaderToken(head->headers, "Expect", "100-continue")) {
      if (!SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return;
      RemoveHeader(head->headers, "Expect");
    }

    // Read the whole request body, so it can be re-sent with a Content-Length.
    std::string body;
    bool had_body = false;
    if (HasHeaderToken(head->headers, "Transfer-Encoding", "chunked")) {
      had_body = true;
      Result<void> read = ReadChunkedBody(client, [&](std::string_view piece) -> Result<void> {
        if (body.size() + piece.size() > options_.max_request_body_bytes) {
          return Fail(ErrorCode::kResourceExhausted, "request body too large");
        }
        body.append(piece);
        return Ok();
      });
      if (!read) {
        if (read.error().code() == ErrorCode::kResourceExhausted) {
          (void)SendAll(fd, CannedResponse(413, {}, "", false, true));
        }
        return;
      }
      RemoveHeader(head->headers, "Transfer-Encoding");
    } else {
      Result<std::optional<uint64_t>> length = ContentLength(head->headers);
      if (!length) {
        (void)SendAll(fd, CannedResponse(400, {}, length.error().message(), false, true));
        return;
      }
      if (length->value_or(0) > options_.max_request_body_bytes) {
        (void)SendAll(fd, CannedResponse(413, {}, "", false, true));
        return;
      }
      if (length->has_value()) {
        had_body = true;
        Result<std::string> read = client.ReadExactly(static_cast<size_t>(**length));
        if (!read) return;
        body = *std::move(read);
      }
    }

    std::optional<FaultAction> chosen;
    int rule_id = 0;
    const uint64_t sequence = Admit(head->method, head->target, chosen, rule_id);
    // The request stops counting as in progress just before its last bytes go out (or when
    // the connection ends), so that a client which has read a whole response and started
    // another never sees both counted at once.
    struct Finished {
      FaultProxy* proxy;
      uint64_t sequence;
      bool done = false;
      void Now() {
        if (!std::exchange(done, true)) proxy->RecordFinished(sequence);
      }
      ~Finished() { Now(); }
    } finished{this, sequence};
    const FaultAction action = chosen.value_or(FaultAction{});
    const bool head_only = head->method == "HEAD";

    if (action.delay.count() > 0 && !Sleep(action.delay)) return;
    if (action.close_without_response) return;
    if (action.respond_status.has_value()) {
      int status = *action.respond_status;
      Record(sequence, status, head_only ? 0 : action.respond_body.size());
      finished.Now();
      if (!SendAll(fd, CannedResponse(status, action.respond_headers, action.respond_body,
                                      head_only, client_close))) {
        return;
      }
      if (client_close) return;
      continue;
    }

    // Forward to the upstream on a fresh connection.
    Result<UniqueFd> upstream =
        ConnectTcp(upstream_host_, upstream_port_, options_.upstream_timeout);
    if (!upstream) {
      std::string message =
          "fault proxy: upstream " + upstream_ + ": " + upstream.error().message();
      Record(sequence, 502, 0);
      (void)SendAll(fd, CannedResponse(502, {}, message, head_only, client_close));
      if (client_close) return;
      continue;
    }
    const int upstream_fd = upstream->get();
    timeval receive_timeout{
        .tv_sec = static_cast<time_t>(options_.upstream_timeout.count() / 1000),
        .tv_usec = static_cast<suseconds_t>(options_.upstream_timeout.count() % 1000 * 1000)};
    ::setsockopt(upstream_fd, SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, sizeof(receive_timeout));
    TrackUpstream(upstream_fd, true);
    struct Untrack {
      FaultProxy* proxy;
      int fd;
      ~Untrack() { proxy->TrackUpstream(fd, false); }
    } untrack{this, upstream_fd};

    RequestHead forwarded = *head;
    for (std::string_view hop :
         {"Connection", "Keep-Alive", "Proxy-Connection", "Content-Length"}) {
      RemoveHeader(forwarded.headers, hop);
    }
    if (had_body || !body.empty()) {
      forwarded.headers.emplace_back("Content-Length", std::to_string(body.size()));
    }
    forwarded.headers.emplace_back("Connection", "close");
    forwarded.version = "HTTP/1.1";
    if (!SendAll(upstream_fd, SerializeRequestHead(forwarded) + body)) {
      Record(sequence, 502, 0);
      (void)SendAll(fd, CannedResponse(502, {}, "fault proxy: upstream closed", head_only, true));
      return;
    }

    SocketReader reader(upstream_fd);
    Result<ResponseHead> response = Fail(ErrorCode::kUnavailable, "no response");
    while (true) {
      Result<std::optional<std::string>> response_text = reader.ReadHead();
      if (!response_text || !response_text->has_value()) {
        response = Fail(ErrorCode::kUnavailable, "upstream closed without a response");
        break;
      }
      response = ParseResponseHead(**response_text);
      if (!response || response->status >= 200) break;  // skip 1xx interim responses
    }
    if (!response) {
      Record(sequence, 502, 0);
      (void)SendAll(fd, CannedResponse(502, {}, "fault proxy: " + response.error().message(),
                                       head_only, true));
      return;
    }

    enum class Framing { kNone, kLength, kChunked, kUntilClose };
    Framing framing;
    uint64_t length = 0;
    Result<std::optional<uint64_t>> declared = ContentLength(response->headers);
    if (head_only || response->status == 204 || response->status == 304) {
      framing = Framing::kNone;
    } else if (HasHeaderToken(response->headers, "Transfer-Encoding", "chunked")) {
      framing = Framing::kChunked;
    } else if (declared && declared->has_value()) {
      framing = Framing::kLength;
      length = **declared;
    } else {
      framing = Framing::kUntilClose;
    }
    bool close_after = client_close || framing == Framing::kUntilClose;
    ResponseHead to_client = *response;
    for (std::string_view hop : {"Connection", "Keep-Alive"}) RemoveHeader(to_client.headers, hop);
    if (close_after) to_client.headers.emplace_back("Connection", "close");
    Record(sequence, response->status, 0);
    if (framing == Framing::kNone || (framing == Framing::kLength && length == 0)) finished.Now();
    if (!SendAll(fd, SerializeResponseHead(to_client))) {
      RecordClientGone(sequence);
      return;
    }

    BodyPump pump(
        fd, action, framing == Framing::kChunked,
        [this](std::chrono::milliseconds duration) { return Sleep(duration); },
        [&, this, sequence, status = response->status](uint64_t sent) {
          Record(sequence, status, sent);
          if (framing == Framing::kLength && sent >= length) finished.Now();
        });
    bool keep_going = !pump.DropsImmediately() || framing == Framing::kNone;
    if (keep_going) {
      switch (framing) {
        case Framing::kNone:
          break;
        case Framing::kLength: {
          uint64_t remaining = length;
          while (keep_going && remaining > 0) {
            Result<std::string> piece =
                reader.ReadSome(static_cast<size_t>(std::min<uint64_t>(remaining, kPieceBytes)));
            if (!piece || piece->empty()) {
              keep_going = false;  // upstream cut it short: so must we
              break;
            }
            remaining -= piece->size();
            keep_going = pump.Write(*piece);
          }
          break;
        }
        case Framing::kChunked: {
          Result<void> relayed =
              ReadChunkedBody(reader, [&](std::string_view piece) -> Result<void> {
                if (!pump.Write(piece)) return Fail(ErrorCode::kCancelled, "client side ended");
                return Ok();
              });
          if (relayed.has_value()) finished.Now();
          keep_going = relayed.has_value() && pump.Finish();
          break;
        }
        case Framing::kUntilClose:
          while (keep_going) {
            Result<std::string> piece = reader.ReadSome(kPieceBytes);
            if (!piece || piece->empty()) break;
            keep_going = pump.Write(*piece);
          }
          break;
      }
    }
    if (pump.client_gone()) RecordClientGone(sequence);
    if (!keep_going || close_after) return;
  }
}

}  // namespace berth::testing
