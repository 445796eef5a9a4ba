#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "berth/reference/reference.h"
#include "berth/reference/reference_json.h"
#include "cmd/berth/commands.h"

namespace berth::cli {
namespace {

// One normalized reference per line (or JSON); a bad one prints `error: <why> in "<input>"`.
int RefNormalize(const std::vector<std::string>& references, bool json) {
  int status = 0;
  for (const std::string& text : references) {
    Result<Reference> parsed = Reference::Parse(text);
    if (!parsed) {
      std::fprintf(stderr, "error: %s in \"%s\"\n", parsed.error().message().c_str(), text.c_str());
      status = 1;
      continue;
    }
    std::cout << (json ? ReferenceToJson(*parsed) : parsed->ToString()) << "\n";
  }
  return status;
}

}  // namespace

void AddRefCommand(CLI::App& app, int* status) {
  CLI::App* ref = app.add_subcommand("ref", "Work with image references");
  ref->require_subcommand(1);
  CLI::App* normalize = ref->add_subcommand(
      "normalize", "Print references in Docker's normalized form (docker.io/library/x:latest)");
  auto references = std::make_shared<std::vector<std::string>>();
  auto json = std::make_shared<bool>(false);
  normalize->add_option("REF", *references, "Image references")->required();
  normalize->add_flag("--json", *json,
                      "Print {\"domain\",\"path\",\"tag\",\"digest\",\"familiar\"} per reference");
  normalize->callback([=] { *status = RefNormalize(*references, *json); });
}

}  // namespace berth::cli
