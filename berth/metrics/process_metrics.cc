#include "berth/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace berth::metrics {
namespace {

std::string ReadProcFile(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Seconds since the epoch at which the machine booted (/proc/stat's btime), or 0.
double BootTime() {
  std::istringstream stat(ReadProcFile("/proc/stat"));
  std::string key;
  while (stat >> key) {
    if (key == "btime") {
      double seconds = 0;
      stat >> seconds;
      return seconds;
    }
    stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

// Entries of /proc/self/fd, less the one opendir holds while counting; -1 when unreadable.
int OpenFds() {
  DIR* directory = ::opendir("/proc/self/fd");
  if (directory == nullptr) return -1;
  int count = 0;
  while (const dirent* entry = ::readdir(directory)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(directory);
  return count - 1;
}

}  // namespace

bool ParseProcessStat(std::string_view stat, double ticks_per_second, ProcessStat& out) {
  // The command name (field 2) is in parentheses and may hold spaces and ')': fields after it
  // are counted from the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0) return false;
  std::istringstream rest{std::string(stat.substr(close + 1))};
  std::vector<std::string> fields;  // fields[0] is field 3 (state)
  for (std::string field; rest >> field;) fields.push_back(field);
  // Fields 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss (1-based, as proc(5) numbers them).
  auto field = [&](int number) { return std::strtod(fields[number - 3].c_str(), nullptr); };
  if (fields.size() < 22) return false;
  out.cpu_seconds = (field(14) + field(15)) / ticks_per_second;
  out.start_seconds_after_boot = field(22) / ticks_per_second;
  out.virtual_bytes = field(23);
  out.resident_pages = field(24);
  return true;
}

void AddProcessMetrics(Registry& registry) {
  Counter& cpu = registry
                     .AddCounter("process_cpu_seconds_total",
                                 "Total user and system CPU time spent in seconds.")
                     .WithLabels({});
  Gauge& resident =
      registry.AddGauge("process_resident_memory_bytes", "Resident memory size in bytes.")
          .WithLabels({});
  Gauge& virtual_memory =
      registry.AddGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
          .WithLabels({});
  Gauge& open_fds =
      registry.AddGauge("process_open_fds", "Number of open file descriptors.").WithLabels({});
  Gauge& max_fds = registry.AddGauge("process_max_fds", "Maximum number of open file descriptors.")
                       .WithLabels({});
  Gauge& start_time = registry
                          .AddGauge("process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.")
                          .WithLabels({});
  const double boot_time = BootTime();
  registry.AddCollector(
      [&cpu, &resident, &virtual_memory, &open_fds, &max_fds, &start_time, boot_time] {
        ProcessStat stat;
        if (ParseProcessStat(ReadProcFile("/proc/self/stat"),
                             static_cast<double>(::sysconf(_SC_CLK_TCK)), stat)) {
          cpu.Mirror(stat.cpu_seconds);
          resident.Set(stat.resident_pages * static_cast<double>(::sysconf(_SC_PAGESIZE)));
          virtual_memory.Set(stat.virtual_bytes);
          if (boot_time > 0) start_time.Set(boot_time + stat.start_seconds_after_boot);
        }
        if (int fds = OpenFds(); fds >= 0) open_fds.Set(fds);
        rlimit limit{};
        if (::getrlimit(RLIMIT_NOFILE, &limit) == 0)
          max_fds.Set(static_cast<double>(limit.rlim_cur));
      });
}

}  // namespace berth::metrics
