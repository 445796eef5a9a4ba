// berth: the command-line front end. It parses arguments and prints; every operation lives in a
// library module.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "berth/reference/reference.h"
#include "berth/reference/reference_json.h"

namespace {

// `berth ref normalize REF...`: one normalized reference per line, or JSON for one reference.
int RefNormalize(const std::vector<std::string>& references, bool json) {
  int status = 0;
  for (const std::string& text : references) {
    berth::Result<berth::Reference> parsed = berth::Reference::Parse(text);
    if (!parsed) {
      std::fprintf(stderr, "error: %s in \"%s\"\n", parsed.error().message().c_str(), text.c_str());
      status = 1;
      continue;
    }
    std::cout << (json ? berth::ReferenceToJson(*parsed) : parsed->ToString()) << "\n";
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth: a container image service (OCI/Docker pull, content store, snapshots, CRI)"};
  app.require_subcommand(1);
  int status = 0;

  app.add_subcommand("version", "Print the version")->callback([] { std::puts("berth 0.1.0"); });

  CLI::App* ref = app.add_subcommand("ref", "Work with image references");
  ref->require_subcommand(1);
  CLI::App* normalize = ref->add_subcommand(
      "normalize", "Print references in Docker's normalized form (docker.io/library/x:latest)");
  std::vector<std::string> references;
  bool json = false;
  normalize->add_option("REF", references, "Image references")->required();
  normalize->add_flag("--json", json,
                      "Print {\"domain\",\"path\",\"tag\",\"digest\",\"familiar\"} per reference");
  normalize->callback([&] { status = RefNormalize(references, json); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}
