// The installed documentation, as the build wrote it (BERTH_DOCS_DIR): groff reads every manual
// page without a warning, the pages name every command, flag and config key the programs have,
// and the bash completion completes commands, options, paths and stored image names.
#include "cmd/docgen/docs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "berth/config/config_keys.h"
#include "cmd/berth/app.h"
#include "cmd/berthd/flags.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"

namespace berth::docgen {
namespace {

using ::berth::testing::CommandResult;
using ::berth::testing::RunCommand;
using ::berth::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

const std::filesystem::path kDocs = BERTH_DOCS_DIR;

std::string Read(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What groff says about a page read as man(7) with every warning on; "" when nothing.
std::string GroffWarnings(const std::filesystem::path& page, const TempDir& scratch) {
  Result<CommandResult> run =
      RunCommand({"/usr/bin/groff", "-man", "-Tutf8", "-ww", "-z", page.string()}, scratch.path());
  if (!run) return run.error().ToString();
  return run->err + (run->exit_code == 0 ? "" : " (exit " + std::to_string(run->exit_code) + ")");
}

TEST(RoffEscapeTest, KeepsRoffOutOfTheText) {
  EXPECT_EQ(RoffEscape("--root DIR"), "\\-\\-root DIR");
  EXPECT_EQ(RoffEscape(".starts a request\n'so does this"),
            "\\&.starts a request\n\\&'so does this");
  EXPECT_EQ(RoffEscape("a\\b"), "a\\eb");
  EXPECT_EQ(RoffEscape("in the middle. 'quoted'"), "in the middle. 'quoted'");
}

TEST(DocsTest, GroffReadsEveryPageWithoutWarnings) {
  ASSERT_OK_AND_ASSIGN(TempDir scratch, TempDir::Create("docgen"));
  for (const char* page : {"berth.1", "berthd.8", "berth-config.5"}) {
    ASSERT_TRUE(std::filesystem::exists(kDocs / page)) << kDocs / page;
    EXPECT_EQ(GroffWarnings(kDocs / page, scratch), "") << page;
  }
}

TEST(DocsTest, TheBerthPageHasEveryCommandAndOption) {
  const std::string page = Read(kDocs / "berth.1");
  CLI::App app;
  int status = 0;
  cli::BuildApp(app, &status);
  for (const CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; })) {
    EXPECT_THAT(page, HasSubstr(".SS \"berth " + command->get_name())) << "no section";
    for (const CLI::Option* option : command->get_options()) {
      for (const std::string& name : option->get_lnames()) {
        if (name == "help") continue;
        EXPECT_THAT(page, HasSubstr("\\fB\\-\\-" + RoffEscape(name) + "\\fR"))
            << command->get_name() << " --" << name;
      }
    }
  }
  EXPECT_THAT(page, HasSubstr(".SS \"berth content ls")) << "nested commands have sections";
}

TEST(DocsTest, TheBerthdPageHasEveryFlag) {
  const std::string page = Read(kDocs / "berthd.8");
  CLI::App app;
  daemon::Flags flags;
  daemon::BuildApp(app, flags);
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) {
      if (name == "help") continue;
      EXPECT_THAT(page, HasSubstr("\\fB\\-\\-" + RoffEscape(name) + "\\fR")) << name;
    }
  }
}

TEST(DocsTest, TheConfigPageHasEveryKeyWithItsDefault) {
  const std::string page = Read(kDocs / "berth-config.5");
  for (const config::KeyDoc& doc : config::KeyDocs()) {
    EXPECT_THAT(page, HasSubstr("\\fB" + RoffEscape(doc.path) + "\\fR")) << doc.path;
    EXPECT_THAT(page, HasSubstr("Default: " + RoffEscape(doc.default_value))) << doc.path;
  }
}

// What the completion offers for the words of a command line whose last word is being typed,
// with `path_dir` first on PATH (where `berth` is found).
std::vector<std::string> Complete(const std::vector<std::string>& words,
                                  const std::filesystem::path& path_dir, const TempDir& scratch) {
  std::string array;
  for (const std::string& word : words) array += " '" + word + "'";
  const std::string script = "source '" + (kDocs / "berth.bash").string() + "'\n" + "PATH='" +
                             path_dir.string() + "':$PATH\n" + "cd '" + scratch.path().string() +
                             "'\n" + "COMP_WORDS=(" + array + ")\n" +
                             "COMP_CWORD=" + std::to_string(words.size() - 1) + "\n" +
                             "_berth\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
  Result<CommandResult> run = RunCommand({"/bin/bash", "-c", script}, scratch.path());
  EXPECT_TRUE(run.has_value());
  if (!run) return {};
  EXPECT_EQ(run->err, "");
  std::vector<std::string> offered;
  std::istringstream lines(run->out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) offered.push_back(line);
  }
  return offered;
}

class CompletionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(bin_, TempDir::Create("docgen-bin"));
    ASSERT_OK_AND_ASSIGN(scratch_, TempDir::Create("docgen"));
    // A stand-in berth on PATH that lists two stored images, and records how it was called.
    std::ofstream(bin_.path() / "berth")
        << "#!/bin/sh\necho \"$@\" >> '" << (bin_.path() / "calls").string() << "'\n"
        << "[ \"$*\" = '--root /r images --names' ] || exit 1\n"
        << "printf 'docker.io/library/busybox:latest\\nr.local/app:v1\\n'\n";
    std::filesystem::permissions(bin_.path() / "berth", std::filesystem::perms::owner_all);
    std::ofstream(scratch_.path() / "config.toml") << "";
    std::filesystem::create_directories(scratch_.path() / "rootfs");
  }
  std::vector<std::string> Complete(const std::vector<std::string>& words) {
    return docgen::Complete(words, bin_.path(), scratch_);
  }
  TempDir bin_;
  TempDir scratch_;
};

TEST_F(CompletionTest, CompletesCommandsAndTheirSubcommands) {
  EXPECT_THAT(Complete({"berth", "in"}), ElementsAre("inspect"));
  EXPECT_THAT(Complete({"berth", "--root", "/r", "fs"}), ElementsAre("fsinfo"));
  EXPECT_THAT(Complete({"berth", "content", ""}), ElementsAre("ls"));
}

TEST_F(CompletionTest, CompletesTheOptionsOfTheCommandAndTheGlobalOnes) {
  EXPECT_THAT(Complete({"berth", "gc", "--d"}), ElementsAre("--dry-run"));
  EXPECT_THAT(Complete({"berth", "pull", "--ro"}), ElementsAre("--root"));
}

TEST_F(CompletionTest, CompletesPathsForOptionsThatTakeThem) {
  EXPECT_THAT(Complete({"berth", "--config", "con"}), ElementsAre("config.toml"));
  EXPECT_THAT(Complete({"berth", "--root", "/r", "mount", "busybox", "root"}),
              ElementsAre("rootfs"));
}

TEST_F(CompletionTest, CompletesStoredImageNamesWithTheGlobalOptionsTyped) {
  EXPECT_THAT(Complete({"berth", "--root", "/r", "inspect", ""}),
              UnorderedElementsAre("docker.io/library/busybox:latest", "r.local/app:v1"));
  EXPECT_THAT(Complete({"berth", "--root", "/r", "rmi", "r.l"}), ElementsAre("r.local/app:v1"));
  EXPECT_THAT(Complete({"berth", "--root", "/r", "mount", "d"}),
              ElementsAre("docker.io/library/busybox:latest"));
  EXPECT_THAT(Read(bin_.path() / "calls"), HasSubstr("--root /r images --names"));
  // A command whose argument is not a stored image asks berth nothing.
  EXPECT_THAT(Complete({"berth", "--root", "/r", "pull", "b"}), ElementsAre());
}

}  // namespace
}  // namespace berth::docgen
