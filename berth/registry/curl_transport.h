// File: berth/registry/curl_transport.h
//
// CurlTransport: HttpTransport over libcurl (OpenSSL). Reuses connections, DNS results and TLS
// sessions across requests (a curl share object plus a pool of easy handles), prefers HTTP/2 on
// TLS, honours the environment's proxy variables (http_proxy, https_proxy, no_proxy), and adds a
// host's CA file to the system trust store rather than replacing it. A request that allows the
// plain http fallback (PlainHttpFallback) and reaches a server that does not speak TLS is sent
// again over http:// within the same RoundTrip().
//
// A watchdog that gives up on an exchange (HttpRequest's progress_timeout, min_bytes_per_second)
// is reported to the observer given to Create(), if any.
//
// Thread safety: RoundTrip() may be called from many threads at once.
#pragma once

#include <memory>

#include "berth/registry/http.h"
#include "berth/registry/observer.h"

namespace berth::registry {

class CurlTransport final : public HttpTransport {
 public:
  // `observer` (may be null) must outlive the transport.
  static Result<std::unique_ptr<CurlTransport>> Create(RegistryObserver* observer = nullptr);
  ~CurlTransport() override;

  Result<HttpResponse> RoundTrip(const HttpRequest& request, const BodySink* sink,
                                 const CancelToken& cancel) override;

 private:
  struct Shared;
  struct Attempt;
  CurlTransport(std::unique_ptr<Shared> shared, RegistryObserver* observer);
  // One exchange, without the plain http fallback.
  Attempt Perform(const HttpRequest& request, const BodySink* sink, const CancelToken& cancel);

  std::unique_ptr<Shared> shared_;
  RegistryObserver* const observer_;
};

}  // namespace berth::registry
