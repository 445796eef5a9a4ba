// File: test/hygiene/credential_hygiene.h
//
// The credential hygiene checker of the integration tests. Linking the object library
// berth_credential_hygiene into a gtest binary installs, before main():
//   - a sink on berth's logger (berth/base/log.h) that keeps every line this process logs, as
//     written (after the logger's own redaction);
//   - a gtest listener that, when each test ends, runs CheckForLeakedSecrets(): a test whose
//     log lines or noted product output (testing/secret_sentinel.h: CLI output, gRPC
//     statuses, error strings, berthd logs) contain a sentinel credential or a watched secret
//     fails, naming where it leaked.
//
// Thread safety: the sink may be written from any thread; the check runs on the test thread.
#pragma once

namespace berth::testing {

// Checks the log lines captured and the product output noted since the last check (or the start
// of the test) for sentinel credentials and watched secrets, adds one gtest failure per leak, and
// forgets what it checked. Returns the number of leaks found.
int CheckForLeakedSecrets();

}  // namespace berth::testing
