// File: berth/registry/fake_transport.h (test-only)
//
// FakeTransport answers requests from a script of canned responses, in order per
// "METHOD url-prefix" rule, and records every request it saw. For unit tests of the registry
// client's decisions (auth, retries, redirects); end-to-end tests use the real registry.
#pragma once

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "berth/registry/http.h"

namespace berth::registry {

class FakeTransport final : public HttpTransport {
 public:
  // Queues `response` for the next request whose method is `method` and whose URL starts with
  // `url_prefix`. A rule whose queue has one response left keeps answering with it.
  void Respond(const std::string& method, const std::string& url_prefix, HttpResponse response) {
    std::lock_guard lock(mutex_);
    rules_[method + " " + url_prefix].push_back(std::move(response));
  }

  std::vector<HttpRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  Result<HttpResponse> RoundTrip(const HttpRequest& request, const BodySink* sink,
                                 const CancelToken&) override {
    HttpResponse response;
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
      std::string best;
      for (auto& [key, queue] : rules_) {
        std::string method = key.substr(0, key.find(' '));
        std::string prefix = key.substr(key.find(' ') + 1);
        if (method == request.method && request.url.starts_with(prefix) &&
            key.size() > best.size()) {
          best = key;
        }
      }
      if (best.empty()) {
        return Fail(ErrorCode::kUnavailable, "fake transport: connection refused " + request.url);
      }
      auto& queue = rules_[best];
      response = queue.front();
      if (queue.size() > 1) queue.pop_front();
    }
    if (sink != nullptr && response.status >= 200 && response.status < 300) {
      HttpResponse head = response;
      head.body.clear();
      BERTH_RETURN_IF_ERROR((*sink)(head, response.body));
      response.body.clear();
    }
    return response;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::deque<HttpResponse>> rules_;
  std::vector<HttpRequest> requests_;
};

}  // namespace berth::registry
