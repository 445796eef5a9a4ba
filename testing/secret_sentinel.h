// File: testing/secret_sentinel.h
//
// Sentinel credentials and the watch list that lets tests prove no credential leaks.
//
// Every credential the test harness hands out (TestRegistry passwords, TokenServer refresh
// tokens, the passwords and `auth` fields tests put into CRI AuthConfigs and config files)
// starts with kSentinelPrefix, so any occurrence of it in a log line, an error message, a gRPC
// status or CLI output is a leak. Values that cannot carry the prefix (the JWTs a TokenServer
// signs) are added to the watch list with WatchSecret() as they are issued. FindSecrets() looks
// for the prefix, every watched value, and their base64 encodings at each byte alignment (so a
// leaked "Authorization: Basic base64(user:password)" or a Docker `auth` field is found too).
//
// Output produced outside the test process is collected here for the checker in
// test/hygiene (a gtest listener that runs after every test): NoteProductOutput() for text a
// test received from a product: CLI stdout/stderr (RunCommand notes them itself), the logs of
// berth programs run by ChildProcess (noted when the ChildProcess object goes), gRPC status
// messages and Error strings (noted by the tests).
//
// This is process-wide state, test-only by design (berth_testing is never linked into
// products). Thread safety: every function may be called from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace berth::testing {

// The prefix of every sentinel credential.
inline constexpr std::string_view kSentinelPrefix = "berth-sentinel-SECRET";

// A sentinel credential for `purpose`: "berth-sentinel-SECRET-<purpose>".
std::string SentinelSecret(std::string_view purpose);

// Adds `value` (a credential without the prefix, e.g. a signed token) to the watch list. Values
// shorter than 12 bytes are ignored (they would match by accident).
void WatchSecret(std::string_view value);

// Every sentinel or watched secret found in `text`, each described as
// "<what> at offset N" (the description names the form found, never the whole secret).
std::vector<std::string> FindSecrets(std::string_view text);

// Text a product showed to its user, to be checked by the hygiene checker at the end of the test.
void NoteProductOutput(std::string_view source, std::string_view text);

struct ProductOutput {
  std::string source;  // "berth stderr", "gRPC status", a log file path, …
  std::string text;
};

// Everything noted since the last call; clears the notes.
std::vector<ProductOutput> TakeProductOutput();

}  // namespace berth::testing
