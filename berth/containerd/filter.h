// File: berth/containerd/filter.h
//
// SnapshotFilter is containerd's filter language for snapshots, as the Snapshots API's List
// receives it: a list of filters, any of which may match; each filter is a comma-separated list
// of selectors, all of which must match. A selector is a field path with an optional operator
// and value:
//
//   name==x   parent=="sha256:…"   kind==committed   labels."containerd.io/snapshot.ref"==abc
//   labels.k!=v   labels.k   (present)
//
// Fields: name, parent, kind (view, active, committed) and labels.<key>; a label key written as
// several unquoted parts joins them with '.' (labels.a.b is the label "a.b"), as containerd
// does. Values are a quoted string (Go syntax: "…" with \" \\ \n \t \xNN \uNNNN … escapes) or
// the unquoted run of characters up to ',' or white space. Matching is containerd's: "==" needs
// the field present and equal, "!=" compares the value or "" when the field is absent, a bare
// path tests presence.
// An empty filter string matches everything, and so does an empty list.
//
// containerd's metadata layer sends a backend exactly one form, when Prepare reports an existing
// target: labels."containerd.io/snapshot.ref"==<chain ID>,parent=="<backend parent>". Regular
// expressions (~=) are not supported: Parse fails with kInvalidArgument naming the filter.
//
// Thread safety: an immutable value once parsed; Matches may be called from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::containerd {

class SnapshotFilter {
 public:
  // Parses `filters` (any of them may match). kInvalidArgument naming the filter and what is
  // wrong with it (a syntax error, an unknown field, an unsupported operator).
  static Result<SnapshotFilter> Parse(const std::vector<std::string>& filters);

  // Whether `info` (as containerd sees it: its key, its parent's) passes.
  bool Matches(const snapshot::Info& info) const;

 private:
  enum class Operator { kPresent, kEqual, kNotEqual };
  enum class Field { kName, kParent, kKind, kLabel };
  struct Selector {
    Field field = Field::kName;
    std::string label;  // for kLabel
    Operator op = Operator::kPresent;
    std::string value;
  };
  using Conjunction = std::vector<Selector>;  // empty: matches everything

  static Result<Conjunction> ParseOne(std::string_view filter);
  static bool Matches(const Selector& selector, const snapshot::Info& info);

  std::vector<Conjunction> any_of_;  // empty: matches everything
};

}  // namespace berth::containerd
