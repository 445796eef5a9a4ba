// berth gc / berth check: garbage collection and the consistency check of a root
// (service::ImageService::CollectGarbage and Check), in embedded mode (see backend.h).
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cmd/berth/backend.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

namespace berth::cli {
namespace {

using json = nlohmann::ordered_json;

json FreedJson(const gc::Freed& freed) { return {{"count", freed.count}, {"bytes", freed.bytes}}; }

json ReportJson(const gc::CollectReport& report) {
  return {{"blobs", FreedJson(report.blobs)},
          {"snapshots", FreedJson(report.snapshots)},
          {"ingests", FreedJson(report.ingests)},
          {"directories", report.orphan_directories.count},
          {"expiredLeases", report.expired_leases},
          {"bytes", report.total_bytes()},
          {"removed", report.removed},
          {"warnings", report.warnings}};
}

// "3 blobs (12.0 MB), 2 snapshots (30.1 MB), 1 ingest (4.0 MB), 0 directories".
std::string Summary(const gc::CollectReport& report) {
  auto part = [](int64_t count, std::string_view noun, int64_t bytes) {
    return fmt::format("{} {}{} ({})", count, noun, count == 1 ? "" : "s", HumanSize(bytes));
  };
  return fmt::format(
      "{}, {}, {}, {} director{}", part(report.blobs.count, "blob", report.blobs.bytes),
      part(report.snapshots.count, "snapshot", report.snapshots.bytes),
      part(report.ingests.count, "ingest", report.ingests.bytes), report.orphan_directories.count,
      report.orphan_directories.count == 1 ? "y" : "ies");
}

struct GcFlags {
  bool dry_run = false;
  bool json = false;
  bool verbose = false;
};

int Gc(const GcFlags& flags) {
  // The collection itself reports what it frees; no automatic one on opening the root first.
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend({.recover = false});
  if (!backend) return PrintError(backend.error());
  Result<gc::CollectReport> report = (*backend)->CollectGarbage(flags.dry_run);
  if (!report) return PrintError(report.error());
  if (flags.json) {
    std::cout << ReportJson(*report).dump(2) << "\n";
    return 0;
  }
  if (flags.verbose || flags.dry_run) {
    for (const std::string& line : report->removed) std::cout << line << "\n";
  }
  for (const std::string& warning : report->warnings) std::cerr << "warning: " << warning << "\n";
  std::cout << (flags.dry_run ? "would free " : "freed ") << Summary(*report) << ": "
            << HumanSize(report->total_bytes()) << " in all\n";
  return 0;
}

struct CheckFlags {
  bool repair = false;
  bool verify = false;
  bool json = false;
};

// Exit status: 0 when clean (or repaired), 1 when something was found and not repaired.
int Check(const CheckFlags& flags) {
  // Opening the root must not already repair what check is asked to report.
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend({.recover = false});
  if (!backend) return PrintError(backend.error());
  Result<service::CheckReport> report =
      (*backend)->Check({.repair = flags.repair, .verify_digests = flags.verify});
  if (!report) return PrintError(report.error());
  const int status = report->clean() || report->repaired ? 0 : 1;
  if (flags.json) {
    std::cout << json{{"clean", report->clean()},
                      {"repaired", report->repaired},
                      {"problems", report->problems},
                      {"blobsVerified", report->blobs_verified},
                      {"garbage", ReportJson(report->garbage)}}
                     .dump(2)
              << "\n";
    return status;
  }
  for (const std::string& problem : report->problems) std::cout << "problem: " << problem << "\n";
  for (const std::string& line : report->garbage.removed) {
    std::cout << (report->repaired ? "removed: " : "garbage: ") << line << "\n";
  }
  if (flags.verify) std::cout << report->blobs_verified << " blobs verified\n";
  if (report->clean()) {
    std::cout << "clean\n";
  } else if (report->repaired) {
    std::cout << fmt::format("repaired {} problem(s); freed {}\n", report->problems.size(),
                             Summary(report->garbage));
  } else {
    std::cout << fmt::format("{} problem(s), garbage: {}; run `berth check --repair` to fix\n",
                             report->problems.size(), Summary(report->garbage));
  }
  return status;
}

}  // namespace

void AddMaintenanceCommands(CLI::App& app, int* status) {
  auto gc_flags = std::make_shared<GcFlags>();
  CLI::App* gc = app.add_subcommand(
      "gc", "Free blobs, snapshots and partial downloads no image or running pull uses");
  gc->add_flag("--dry-run", gc_flags->dry_run, "List what would be freed, free nothing");
  gc->add_flag("-v,--verbose", gc_flags->verbose, "List each thing freed");
  gc->add_flag("--json", gc_flags->json, "Print JSON");
  gc->callback([=] { *status = Gc(*gc_flags); });

  auto check_flags = std::make_shared<CheckFlags>();
  CLI::App* check = app.add_subcommand(
      "check", "Compare the database with the content store and snapshots; exit 1 on problems");
  check->add_flag("--repair", check_flags->repair,
                  "Drop stale snapshot records, delete corrupt blobs, collect garbage");
  check->add_flag("--verify", check_flags->verify, "Re-hash every blob against its digest");
  check->add_flag("--json", check_flags->json, "Print JSON");
  check->callback([=] { *status = Check(*check_flags); });
}

}  // namespace berth::cli
