#include "berth/config/hosts_dir.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <tuple>

#include "berth/base/file_util.h"
#include "berth/config/toml_reader.h"
#include "berth/config/units.h"

namespace berth::config {

namespace {

using internal::ChildPath;
using internal::Entry;
using internal::Reader;

constexpr std::string_view kHostsFileName = "hosts.toml";
constexpr std::string_view kDefaultDirectory = "_default";
constexpr size_t kMaxHostsFileBytes = 1 << 20;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'; }

std::string ToLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The authority ("host:port") of a URL, with "https://" assumed when it has no scheme.
std::string_view Authority(std::string_view url) {
  size_t scheme_end = url.find("://");
  std::string_view rest = scheme_end == std::string_view::npos ? url : url.substr(scheme_end + 3);
  return rest.substr(0, rest.find('/'));
}

// True if the URL carries userinfo ("user:password@host"), which must never be echoed.
bool HasUserInfo(std::string_view url) {
  return Authority(url).find('@') != std::string_view::npos;
}

// Checks an endpoint URL. On success stores it in *url, with "https://" prepended when it has no
// scheme, and returns an empty string; otherwise returns the problem, phrased to follow the key
// path ("must …"). The URL is quoted in problems only once it is known to carry no credentials.
std::string CheckUrl(std::string_view written, std::string* url) {
  std::string text(written);
  size_t scheme_end = text.find("://");
  if (scheme_end == std::string::npos) {
    text = "https://" + text;
    scheme_end = 5;
  }
  std::string_view scheme = std::string_view(text).substr(0, scheme_end);
  std::string_view authority = Authority(text);

  if (HasUserInfo(text)) {
    return "must not carry credentials in the URL (user@host); configure credentials for the "
           "host instead (URL not shown)";
  }
  if (scheme != "http" && scheme != "https") {
    return fmt::format(
        "must be a URL with an http:// or https:// scheme, like \"https://mirror.local:5000\"; "
        "got \"{}\"",
        written);
  }
  if (std::any_of(text.begin(), text.end(), [](char c) { return IsSpace(c) || c == '\0'; })) {
    return fmt::format("must be a URL without spaces; got \"{}\"", written);
  }
  if (text.find_first_of("?#") != std::string::npos) {
    return fmt::format("must be a URL without a query or fragment; got \"{}\"", written);
  }
  // Host and optional port. An IPv6 address is bracketed: [::1]:5000.
  std::string_view host = authority;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    std::string_view after =
        close == std::string_view::npos ? std::string_view() : authority.substr(close + 1);
    if (close == std::string_view::npos || close == 1 || (!after.empty() && after.front() != ':')) {
      return fmt::format("must be a URL with a valid bracketed IPv6 host; got \"{}\"", written);
    }
    host = authority.substr(0, close + 1);
    if (!after.empty()) {
      has_port = true;
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    has_port = true;
    port = authority.substr(colon + 1);
  }
  if (host.empty()) {
    return fmt::format("must be a URL with a host, like \"https://mirror.local:5000\"; got \"{}\"",
                       written);
  }
  if (has_port) {
    bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    uint32_t number = 0;
    if (digits) {
      for (char c : port) number = number * 10 + static_cast<uint32_t>(c - '0');
    }
    if (!digits || number == 0 || number > 65535) {
      return fmt::format("must be a URL with a port between 1 and 65535; got \"{}\"", written);
    }
  }
  // The path is kept as written; see override_path in hosts_dir.h.
  *url = std::move(text);
  return "";
}

// Resolves a ca/client path against the hosts.toml directory, as containerd's makeAbsPath does
// (filepath.Join, which also cleans the result).
std::string ResolvePath(const std::filesystem::path& base_directory, const std::string& written) {
  std::filesystem::path path(written);
  if (path.is_absolute() || base_directory.empty()) return written;
  return (base_directory / path).lexically_normal().string();
}

// An error about an array element or other value, located at the value itself.
Error ValueProblem(const Reader& reader, const toml::node& node, std::string_view path,
                   std::string_view problem) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{}: {} {}", reader.Site(node.source()), path, problem));
}

// A file path: a non-empty string, resolved against `base_directory`. `path` is its key path.
Result<std::string> ReadPathString(const Reader& reader, const toml::node& node,
                                   std::string_view path,
                                   const std::filesystem::path& base_directory) {
  const toml::value<std::string>* value = node.as_string();
  if (value == nullptr) {
    return Fail(
        ValueProblem(reader, node, path,
                     fmt::format("must be a file path string, got {}", internal::TypeName(node))));
  }
  if (value->get().empty()) return Fail(ValueProblem(reader, node, path, "must not be empty"));
  return ResolvePath(base_directory, value->get());
}

// ca = "file" | ["file", …]
Result<std::vector<std::string>> ReadCa(const Reader& reader, const Entry& entry,
                                        const std::filesystem::path& base_directory) {
  std::vector<std::string> files;
  if (entry.node.is_string()) {
    BERTH_ASSIGN_OR_RETURN(std::string file,
                           ReadPathString(reader, entry.node, entry.path, base_directory));
    files.push_back(std::move(file));
    return files;
  }
  const toml::array* array = entry.node.as_array();
  if (array == nullptr) {
    return Fail(reader.WrongType(entry, "a file path string or an array of them"));
  }
  for (size_t i = 0; i < array->size(); ++i) {
    BERTH_ASSIGN_OR_RETURN(std::string file,
                           ReadPathString(reader, *array->get(i),
                                          fmt::format("{}[{}]", entry.path, i), base_directory));
    files.push_back(std::move(file));
  }
  return files;
}

// client = "cert+key" | ["cert+key", …] | [["cert", "key"], …]; the array forms may be mixed,
// as containerd allows.
Result<std::vector<std::pair<std::string, std::string>>> ReadClient(
    const Reader& reader, const Entry& entry, const std::filesystem::path& base_directory) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (entry.node.is_string()) {
    BERTH_ASSIGN_OR_RETURN(std::string file,
                           ReadPathString(reader, entry.node, entry.path, base_directory));
    pairs.emplace_back(std::move(file), "");
    return pairs;
  }
  const toml::array* array = entry.node.as_array();
  if (array == nullptr) {
    return Fail(reader.WrongType(entry,
                                 "a combined PEM path string, an array of them, or an array of "
                                 "[\"cert\", \"key\"] pairs"));
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = *array->get(i);
    std::string path = fmt::format("{}[{}]", entry.path, i);
    if (element.is_string()) {
      BERTH_ASSIGN_OR_RETURN(std::string file,
                             ReadPathString(reader, element, path, base_directory));
      pairs.emplace_back(std::move(file), "");
      continue;
    }
    const toml::array* pair = element.as_array();
    if (pair == nullptr) {
      return Fail(ValueProblem(
          reader, element, path,
          fmt::format("must be a combined PEM path string or a [\"cert\", \"key\"] pair, got {}",
                      internal::TypeName(element))));
    }
    if (pair->size() != 2) {
      return Fail(ValueProblem(
          reader, element, path,
          fmt::format("must be a [\"cert\", \"key\"] pair of exactly 2 paths; got {} elements",
                      pair->size())));
    }
    BERTH_ASSIGN_OR_RETURN(std::string cert,
                           ReadPathString(reader, *pair->get(0), path + "[0]", base_directory));
    BERTH_ASSIGN_OR_RETURN(std::string key,
                           ReadPathString(reader, *pair->get(1), path + "[1]", base_directory));
    pairs.emplace_back(std::move(cert), std::move(key));
  }
  return pairs;
}

Result<unsigned> ReadCapabilities(const Reader& reader, const Entry& entry) {
  const toml::array* array = entry.node.as_array();
  if (array == nullptr) {
    return Fail(reader.WrongType(entry, "an array of \"pull\", \"resolve\" and \"push\""));
  }
  if (array->empty()) return kHostAllCapabilities;  // containerd: none listed means all
  unsigned capabilities = 0;
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = *array->get(i);
    std::string path = fmt::format("{}[{}]", entry.path, i);
    const toml::value<std::string>* value = element.as_string();
    if (value == nullptr) {
      return Fail(
          ValueProblem(reader, element, path,
                       fmt::format("must be a string, got {}", internal::TypeName(element))));
    }
    std::string name = ToLower(value->get());
    if (name == "pull") {
      capabilities |= kHostPull;
    } else if (name == "resolve") {
      capabilities |= kHostResolve;
    } else if (name == "push") {
      capabilities |= kHostPush;
    } else {
      return Fail(ValueProblem(
          reader, element, path,
          fmt::format("must be one of \"pull\", \"resolve\", \"push\"; got \"{}\"", value->get())));
    }
  }
  return capabilities;
}

bool IsHeaderNameChar(char c) {
  // RFC 9110 token characters.
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// header: name → "value" | ["value", …]. Values are never quoted: they may be credentials.
Result<std::map<std::string, std::vector<std::string>>> ReadHeaders(const Reader& reader,
                                                                    const Entry& header_entry) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(header_entry));
  std::map<std::string, std::vector<std::string>> headers;
  for (auto&& [key, node] : *table) {
    Entry entry{key, node, ChildPath(header_entry.path, key.str())};
    std::string_view name = key.str();
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsHeaderNameChar)) {
      return Fail(reader.Problem(
          entry,
          "must be named by a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"));
    }
    std::vector<std::string> values;
    if (const toml::value<std::string>* value = node.as_string()) {
      values.push_back(value->get());
    } else if (node.is_array()) {
      BERTH_ASSIGN_OR_RETURN(values, reader.StringArray(entry, /*allow_empty_strings=*/true));
    } else {
      return Fail(reader.WrongType(entry, "a string or an array of strings"));
    }
    for (const std::string& value : values) {
      if (value.find_first_of("\r\n") != std::string::npos ||
          value.find('\0') != std::string::npos) {
        return Fail(reader.Problem(
            entry, "must not contain line breaks or NUL characters (value not shown)"));
      }
    }
    headers[std::string(name)] = std::move(values);
  }
  return headers;
}

Result<std::chrono::nanoseconds> ReadDialTimeout(const Reader& reader, const Entry& entry) {
  if (!entry.node.is_string()) {
    return Fail(reader.WrongType(entry, "a duration string like \"5s\""));
  }
  Result<std::chrono::nanoseconds> timeout = ParseDuration(entry.node.as_string()->get());
  if (!timeout) {
    return Fail(reader.Problem(entry, "has an invalid value: " + timeout.error().message()));
  }
  if (timeout->count() < 0) return Fail(reader.Problem(entry, "must not be negative"));
  return *timeout;
}

// Reads the keys an endpoint table may have into `endpoint`. Returns false (and leaves the key
// alone) for a key that is not an endpoint key, so the caller can handle or reject it.
Result<bool> ReadEndpointKey(const Reader& reader, const Entry& entry,
                             const std::filesystem::path& base_directory,
                             HostsFileEntry& endpoint) {
  std::string_view name = entry.key.str();
  if (name == "capabilities") {
    BERTH_ASSIGN_OR_RETURN(endpoint.capabilities, ReadCapabilities(reader, entry));
  } else if (name == "ca") {
    BERTH_ASSIGN_OR_RETURN(endpoint.ca_files, ReadCa(reader, entry, base_directory));
  } else if (name == "client") {
    BERTH_ASSIGN_OR_RETURN(endpoint.client_pairs, ReadClient(reader, entry, base_directory));
  } else if (name == "skip_verify") {
    BERTH_ASSIGN_OR_RETURN(bool skip_verify, reader.Bool(entry));
    endpoint.skip_verify = skip_verify;
  } else if (name == "override_path") {
    BERTH_ASSIGN_OR_RETURN(endpoint.override_path, reader.Bool(entry));
  } else if (name == "header") {
    BERTH_ASSIGN_OR_RETURN(endpoint.headers, ReadHeaders(reader, entry));
  } else if (name == "dial_timeout") {
    BERTH_ASSIGN_OR_RETURN(endpoint.dial_timeout, ReadDialTimeout(reader, entry));
  } else {
    return false;
  }
  return true;
}

Result<HostsFileEntry> ReadMirror(const Reader& reader, const Entry& mirror_entry,
                                  const std::filesystem::path& base_directory) {
  HostsFileEntry mirror;
  if (std::string problem = CheckUrl(mirror_entry.key.str(), &mirror.url); !problem.empty()) {
    if (HasUserInfo(mirror_entry.key.str())) {
      // The key path would quote the credentials; name the table without it.
      Entry hidden{mirror_entry.key, mirror_entry.node, "a host.\"…\" table"};
      return Fail(reader.Problem(hidden, problem));
    }
    return Fail(reader.Problem(mirror_entry, problem));
  }
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(mirror_entry));
  for (auto&& [key, node] : *table) {
    Entry entry{key, node, ChildPath(mirror_entry.path, key.str())};
    BERTH_ASSIGN_OR_RETURN(bool known, ReadEndpointKey(reader, entry, base_directory, mirror));
    if (!known) {
      return Fail(reader.UnknownKey(entry, mirror_entry.path,
                                    {"capabilities", "ca", "client", "skip_verify", "header",
                                     "override_path", "dial_timeout"}));
    }
  }
  return mirror;
}

// The [host."…"] tables in the order they first appear in the file. toml++ keeps a table's keys
// sorted, but records where each key was first written, which is the order containerd uses.
Result<std::vector<HostsFileEntry>> ReadMirrors(const Reader& reader, const Entry& host_entry,
                                                const std::filesystem::path& base_directory) {
  BERTH_ASSIGN_OR_RETURN(const toml::table* table, reader.Table(host_entry));
  struct Located {
    std::tuple<uint32_t, uint32_t> position;
    const toml::key* key;
    const toml::node* node;
  };
  std::vector<Located> located;
  for (auto&& [key, node] : *table) {
    const toml::source_position& begin =
        key.source().begin.line > 0 ? key.source().begin : node.source().begin;
    located.push_back({{begin.line, begin.column}, &key, &node});
  }
  std::stable_sort(located.begin(), located.end(),
                   [](const Located& a, const Located& b) { return a.position < b.position; });
  std::vector<HostsFileEntry> mirrors;
  mirrors.reserve(located.size());
  for (const Located& item : located) {
    Entry entry{*item.key, *item.node, ChildPath(host_entry.path, item.key->str())};
    BERTH_ASSIGN_OR_RETURN(HostsFileEntry mirror, ReadMirror(reader, entry, base_directory));
    mirrors.push_back(std::move(mirror));
  }
  return mirrors;
}

std::string DefaultServerUrl(std::string_view host) {
  if (host == "docker.io") return "https://registry-1.docker.io";
  return fmt::format("https://{}", host);
}

// True if `host` names one directory entry under a root and nothing else.
bool IsSafeHostName(std::string_view host) {
  if (host.empty() || host == "." || host == "..") return false;
  return std::none_of(host.begin(), host.end(),
                      [](char c) { return c == '/' || c == '\0' || IsSpace(c); });
}

// containerd's hostDirectory: the last ":port" becomes "_port_".
std::string PortDirectoryName(std::string_view host) {
  size_t colon = host.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::string(host);
  return fmt::format("{}_{}_", host.substr(0, colon), host.substr(colon + 1));
}

// Reads and parses <directory>/hosts.toml; nullopt when it is missing or empty.
Result<std::optional<HostsFile>> LoadFromDirectory(const std::filesystem::path& directory,
                                                   std::string_view host) {
  std::filesystem::path file = directory / kHostsFileName;
  Result<std::string> text = ReadFile(file, kMaxHostsFileBytes);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return std::optional<HostsFile>();
    return Fail(std::move(text).error().WithContext(fmt::format("load {}", file.string())));
  }
  if (text->empty()) return std::optional<HostsFile>();
  BERTH_ASSIGN_OR_RETURN(HostsFile hosts_file, ParseHostsFile(*text, file.string(), host));
  return std::optional<HostsFile>(std::move(hosts_file));
}

}  // namespace

Result<HostsFile> ParseHostsFile(std::string_view toml_text, std::string_view source_name,
                                 std::string_view host) {
  if (host.empty()) {
    return Fail(
        ErrorCode::kInvalidArgument,
        fmt::format("{}: the registry host the file configures must not be empty", source_name));
  }
  BERTH_ASSIGN_OR_RETURN(toml::table document, internal::ParseToml(toml_text, source_name));
  Reader reader(source_name);
  const std::filesystem::path base_directory = std::filesystem::path(source_name).parent_path();

  HostsFile hosts_file;
  hosts_file.source = std::filesystem::path(source_name);
  for (auto&& [key, node] : document) {
    Entry entry{key, node, internal::KeySegment(key.str())};
    std::string_view name = key.str();
    if (name == "server") {
      BERTH_ASSIGN_OR_RETURN(std::string server, reader.String(entry));
      if (std::string problem = CheckUrl(server, &hosts_file.server.url); !problem.empty()) {
        return Fail(reader.Problem(entry, problem));
      }
      hosts_file.server_explicit = true;
    } else if (name == "host") {
      BERTH_ASSIGN_OR_RETURN(hosts_file.mirrors, ReadMirrors(reader, entry, base_directory));
    } else {
      BERTH_ASSIGN_OR_RETURN(bool known,
                             ReadEndpointKey(reader, entry, base_directory, hosts_file.server));
      if (!known) {
        return Fail(reader.UnknownKey(entry, "a hosts.toml",
                                      {"server", "capabilities", "ca", "client", "skip_verify",
                                       "header", "override_path", "host", "dial_timeout"}));
      }
    }
  }
  if (!hosts_file.server_explicit) hosts_file.server.url = DefaultServerUrl(host);
  return hosts_file;
}

std::vector<std::filesystem::path> HostDirectoryCandidates(const std::filesystem::path& config_path,
                                                           std::string_view host) {
  std::vector<std::filesystem::path> candidates;
  std::string port_name = PortDirectoryName(host);
  if (port_name != host) candidates.push_back(config_path / port_name);
  candidates.push_back(config_path / std::string(host));
  candidates.push_back(config_path / std::string(kDefaultDirectory));
  return candidates;
}

Result<std::optional<std::filesystem::path>> FindHostDirectory(
    const std::filesystem::path& config_path, std::string_view host) {
  if (!IsSafeHostName(host)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("registry host \"{}\" cannot name a directory under {}: it must be "
                            "non-empty, not \".\" or \"..\", and without '/' or spaces",
                            host, config_path.string()));
  }
  struct stat info {};
  if (::stat(config_path.c_str(), &info) != 0) {
    if (errno == ENOENT) return std::optional<std::filesystem::path>();
    return Fail(ErrnoError(errno, fmt::format("stat config_path {}", config_path.string())));
  }
  if (!S_ISDIR(info.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("config_path {} is not a directory; point it at a directory of "
                            "<host>/hosts.toml files",
                            config_path.string()));
  }
  for (const std::filesystem::path& candidate : HostDirectoryCandidates(config_path, host)) {
    if (::stat(candidate.c_str(), &info) != 0) {
      if (errno == ENOENT) continue;
      return Fail(ErrnoError(errno, fmt::format("stat {}", candidate.string())));
    }
    if (!S_ISDIR(info.st_mode)) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("{} is not a directory; a host's settings go in "
                              "{}/hosts.toml",
                              candidate.string(), candidate.string()));
    }
    return std::optional<std::filesystem::path>(candidate);
  }
  return std::optional<std::filesystem::path>();
}

Result<std::optional<HostsFile>> LoadHostsFile(const std::filesystem::path& config_path,
                                               std::string_view host) {
  BERTH_ASSIGN_OR_RETURN(std::optional<std::filesystem::path> directory,
                         FindHostDirectory(config_path, host));
  if (!directory) return std::optional<HostsFile>();
  return LoadFromDirectory(*directory, host);
}

Result<std::optional<HostsFile>> LoadHostsFileFromConfigPath(std::string_view config_path,
                                                             std::string_view host) {
  size_t start = 0;
  while (start <= config_path.size()) {
    size_t end = config_path.find(':', start);
    if (end == std::string_view::npos) end = config_path.size();
    std::string_view root = config_path.substr(start, end - start);
    start = end + 1;
    if (root.empty()) continue;
    BERTH_ASSIGN_OR_RETURN(std::optional<std::filesystem::path> directory,
                           FindHostDirectory(std::filesystem::path(root), host));
    if (directory) return LoadFromDirectory(*directory, host);
  }
  return std::optional<HostsFile>();
}

}  // namespace berth::config
