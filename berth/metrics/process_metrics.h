// File: berth/metrics/process_metrics.h
//
// The standard process metrics every Prometheus client exports, read from /proc/self at each
// scrape (a collector of the registry):
//   process_cpu_seconds_total         user + system CPU time (counter)
//   process_resident_memory_bytes     resident set size
//   process_virtual_memory_bytes      virtual memory size
//   process_open_fds                  open file descriptors
//   process_max_fds                   the soft RLIMIT_NOFILE
//   process_start_time_seconds        start time, seconds since the Unix epoch
// A value /proc does not give (not Linux, a read error) is left as it was.
//
// Thread safety: as Registry.
#pragma once

#include "berth/metrics/metrics.h"

namespace berth::metrics {

// Registers the process_* families in `registry` and the collector that refreshes them.
void AddProcessMetrics(Registry& registry);

// What /proc/self/stat says of the process, parsed from its text (for tests).
struct ProcessStat {
  double cpu_seconds = 0;
  double start_seconds_after_boot = 0;
  double virtual_bytes = 0;
  double resident_pages = 0;
};
// `stat` is the text of /proc/<pid>/stat; `ticks_per_second` is sysconf(_SC_CLK_TCK). False when
// the text is not in that format.
bool ParseProcessStat(std::string_view stat, double ticks_per_second, ProcessStat& out);

}  // namespace berth::metrics
