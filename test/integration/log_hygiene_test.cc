// Credential hygiene over one whole daemon log at trace level: the built berthd pulls through its
// CRI socket from a Basic-auth registry (credentials in the CRI AuthConfig) and from a token-auth
// registry (credentials in berth's config file), each also with a wrong password, every one of
// them a unique sentinel (testing/secret_sentinel.h). Then the whole daemon log and every file
// under the daemon's root, state and the test's output directory are searched for the
// sentinels, their base64 forms (a Basic Authorization value, Docker's `auth` field) and the
// bearer tokens the token server issued (watched as issued): none may appear anywhere.
//
// The per-test hygiene listener (test/hygiene) checks the log lines and noted outputs too; this
// test adds what it does not see: the daemon at trace level, and the files the daemon wrote.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "berth/base/base64.h"
#include "proto/runtime/v1/api.grpc.pb.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"

namespace berth {
namespace {

using berth::testing::ChildProcess;
using berth::testing::TempDir;
using berth::testing::TestRegistry;
using berth::testing::TestRegistryMode;
using berth::testing::TestRegistryOptions;
using ::testing::HasSubstr;

namespace v1 = ::runtime::v1;

std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class DaemonLogHygieneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> input = TempDir::Create("log-hygiene-input");
    Result<TempDir> output = TempDir::Create("log-hygiene");
    ASSERT_TRUE(input && output);
    input_.emplace(std::move(*input));
    output_.emplace(std::move(*output));

    TestRegistryOptions basic{.mode = TestRegistryMode::kBasicAuth, .log_level = "warn"};
    basic.username = "basic-user";
    basic.password = Secret(berth::testing::SentinelSecret("hygiene-basic-password-5e1d"));
    Result<std::unique_ptr<TestRegistry>> basic_registry = TestRegistry::Start(std::move(basic));
    ASSERT_TRUE(basic_registry) << basic_registry.error().ToString();
    basic_registry_ = std::move(*basic_registry);

    TestRegistryOptions token{.mode = TestRegistryMode::kTokenAuth, .log_level = "warn"};
    token.username = "token-user";
    token.password = Secret(berth::testing::SentinelSecret("hygiene-token-password-83c0"));
    token.token.allow_anonymous = false;
    Result<std::unique_ptr<TestRegistry>> token_registry = TestRegistry::Start(std::move(token));
    ASSERT_TRUE(token_registry) << token_registry.error().ToString();
    token_registry_ = std::move(*token_registry);

    Result<imagegen::Image> image = service::testing::MakeTestImage("a");
    ASSERT_TRUE(image) << image.error().ToString();
    for (TestRegistry* registry : {basic_registry_.get(), token_registry_.get()}) {
      Result<imagegen::PushedImage> pushed = service::testing::PushTestImage(
          registry->url(), "team/app", "v1", *image, registry->username(), registry->password());
      ASSERT_TRUE(pushed) << pushed.error().ToString();
    }
  }

  // berth's config file: the token registry's credentials, nothing for the Basic one. It is the
  // input that must hold a secret, so it lives in a directory of its own, not searched.
  std::filesystem::path WriteConfig() const {
    std::filesystem::path path = input_->Join("config.toml");
    std::ofstream(path) << "[pull]\nsnapshotter = \"native\"\n"
                        << "[registry.configs.\"" << token_registry_->host() << "\".auth]\n"
                        << "username = \"" << token_registry_->username() << "\"\n"
                        << "password = \"" << token_registry_->password().reveal() << "\"\n";
    return path;
  }

  void StartDaemon() {
    Result<std::unique_ptr<ChildProcess>> daemon =
        berth::testing::StartBerthd({.config_file = WriteConfig(),
                                     .root = output_->Join("root"),
                                     .state = output_->Join("state"),
                                     .socket = socket(),
                                     .log_level = "trace",
                                     .log_file = output_->Join("berthd.log")});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
    channel_ = grpc::CreateChannel("unix:" + socket(), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(
        channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)))
        << daemon_->ReadLog();
    stub_ = v1::ImageService::NewStub(channel_);
  }

  std::string socket() const { return output_->Join("run/berth.sock").string(); }

  grpc::Status Pull(const std::string& image, const v1::AuthConfig* auth) {
    v1::PullImageRequest request;
    request.mutable_image()->set_image(image);
    if (auth != nullptr) *request.mutable_auth() = *auth;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::PullImageResponse response;
    grpc::Status status = stub_->PullImage(&context, request, &response);
    berth::testing::NoteProductOutput("gRPC status", status.error_message());
    return status;
  }

  static v1::AuthConfig UserPassword(const std::string& username, const std::string& password) {
    v1::AuthConfig auth;
    auth.set_username(username);
    auth.set_password(password);
    return auth;
  }

  // The secrets of this test in every form they could leak in, each with a name for messages.
  std::vector<std::pair<std::string, std::string>> Secrets() const {
    std::vector<std::pair<std::string, std::string>> secrets;
    for (const TestRegistry* registry : {basic_registry_.get(), token_registry_.get()}) {
      const std::string& password = registry->password().reveal();
      secrets.emplace_back(registry->username() + "'s password", password);
      secrets.emplace_back(registry->username() + "'s Basic credentials",
                           Base64Encode(registry->username() + ":" + password));
      secrets.emplace_back(registry->username() + "'s wrong Basic credentials",
                           Base64Encode(registry->username() + ":" + wrong_password_));
    }
    secrets.emplace_back("the wrong password", wrong_password_);
    return secrets;
  }

  // Every leak in `text` (from `where`): the sentinels, watched tokens and their base64 forms
  // (FindSecrets), and this test's secrets verbatim.
  std::vector<std::string> Leaks(const std::string& where, const std::string& text) const {
    std::vector<std::string> leaks;
    for (const std::string& found : berth::testing::FindSecrets(text)) {
      leaks.push_back(where + ": " + found);
    }
    for (const auto& [name, value] : Secrets()) {
      if (text.find(value) != std::string::npos) leaks.push_back(where + ": " + name);
    }
    return leaks;
  }

  const std::string wrong_password_ = berth::testing::SentinelSecret("hygiene-wrong-password-9a47");
  std::optional<TempDir> input_;
  std::optional<TempDir> output_;
  std::unique_ptr<TestRegistry> basic_registry_;
  std::unique_ptr<TestRegistry> token_registry_;
  std::unique_ptr<ChildProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ImageService::Stub> stub_;
};

TEST_F(DaemonLogHygieneTest, NoCredentialInTheTraceLogOrAnyFileTheDaemonWrote) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  const std::string basic_image = basic_registry_->host() + "/team/app:v1";
  const std::string token_image = token_registry_->host() + "/team/app:v1";

  // Refused logins first: a wrong sentinel password for each registry, in the CRI AuthConfig.
  v1::AuthConfig wrong_basic = UserPassword(basic_registry_->username(), wrong_password_);
  grpc::Status refused_basic = Pull(basic_image, &wrong_basic);
  EXPECT_EQ(refused_basic.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << refused_basic.error_message();
  v1::AuthConfig wrong_token = UserPassword(token_registry_->username(), wrong_password_);
  grpc::Status refused_token = Pull(token_image, &wrong_token);
  EXPECT_EQ(refused_token.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << refused_token.error_message();

  // Then the pulls: Basic with the CRI AuthConfig, token auth with the config file's credentials.
  v1::AuthConfig right_basic =
      UserPassword(basic_registry_->username(), basic_registry_->password().reveal());
  grpc::Status pulled_basic = Pull(basic_image, &right_basic);
  EXPECT_TRUE(pulled_basic.ok()) << pulled_basic.error_message() << "\n" << daemon_->ReadLog();
  grpc::Status pulled_token = Pull(token_image, nullptr);
  EXPECT_TRUE(pulled_token.ok()) << pulled_token.error_message() << "\n" << daemon_->ReadLog();
  EXPECT_GE(token_registry_->token_server()->stats().tokens_issued, 1u)
      << "a bearer token was issued (and watched as a secret)";

  stub_.reset();
  channel_.reset();
  berth::testing::ExitStatus status = daemon_->Stop(std::chrono::seconds(20));
  EXPECT_TRUE(status.success()) << status.ToString();

  // The log is the trace-level one, with the requests to both registries and the token fetch:
  // a search of a quiet log would prove nothing.
  const std::string log = ReadWholeFile(output_->Join("berthd.log"));
  EXPECT_THAT(log, HasSubstr(" trace "));
  EXPECT_THAT(log, HasSubstr("registry.request method=GET url=http://" + basic_registry_->host()));
  EXPECT_THAT(log, HasSubstr("registry.request method=GET url=http://" + token_registry_->host()));
  EXPECT_THAT(log, HasSubstr("registry.token_fetched"));

  std::vector<std::string> leaks = Leaks("berthd.log", log);
  size_t files = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(output_->path());
       it != std::filesystem::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file() || it->path() == output_->Join("berthd.log")) continue;
    ++files;
    std::vector<std::string> found = Leaks(it->path().string(), ReadWholeFile(it->path()));
    leaks.insert(leaks.end(), found.begin(), found.end());
  }
  EXPECT_GE(files, 5u) << "the root holds the blobs and the metadata database";
  EXPECT_THAT(leaks, ::testing::IsEmpty());
}

}  // namespace
}  // namespace berth
