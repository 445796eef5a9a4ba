// KeyDocs() against the parser, both ways: every key the parser names in its unknown-key errors
// is documented, and every documented key parses with its example value.
#include "berth/config/config_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "berth/config/config.h"

namespace berth::config {
namespace {

// What a documented path's placeholders stand for in a test document.
std::string Concrete(std::string_view path) {
  std::string concrete(path);
  for (const auto& [placeholder, value] : std::vector<std::pair<std::string, std::string>>{
           {"<host>", "\"r.local\""}, {"<name>", "X-Berth-Test"}}) {
    for (size_t at = concrete.find(placeholder); at != std::string::npos;
         at = concrete.find(placeholder)) {
      concrete.replace(at, placeholder.size(), value);
    }
  }
  return concrete;
}

std::set<std::string> DocumentedPaths() {
  std::set<std::string> paths;
  for (const KeyDoc& doc : KeyDocs()) paths.emplace(doc.path);
  return paths;
}

// The keys ParseConfig lists for the table of `document`, whose one unknown key is far from
// every known one (so the error lists the table's keys instead of suggesting one).
std::vector<std::string> KeysTheParserLists(const std::string& document) {
  Result<Config> parsed = ParseConfig(document, "keys.toml");
  EXPECT_FALSE(parsed.has_value()) << document;
  if (parsed) return {};
  std::smatch match;
  const std::string message = parsed.error().message();
  if (!std::regex_search(message, match, std::regex(" are (.*)\\)$"))) {
    ADD_FAILURE() << "no key list in: " << message;
    return {};
  }
  std::vector<std::string> keys;
  const std::string list = match[1];
  for (size_t start = 0; start <= list.size();) {
    size_t comma = list.find(", ", start);
    if (comma == std::string::npos) comma = list.size();
    keys.push_back(list.substr(start, comma - start));
    start = comma + 2;
  }
  return keys;
}

TEST(ConfigKeysTest, EveryKeyTheParserKnowsIsDocumented) {
  struct Table {
    std::string document;  // a document with an unknown key in the table
    std::string prefix;    // the documented paths of the table's keys start with this
  };
  const std::vector<Table> tables = {
      {"zzzzzzzzzz = 1\n", ""},
      {"[pull]\nzzzzzzzzzz = 1\n", "pull."},
      {"[peers]\nzzzzzzzzzz = 1\n", "peers."},
      {"[registry]\nzzzzzzzzzz = 1\n", "registry."},
      {"[registry.mirrors.\"r.local\"]\nzzzzzzzzzz = 1\n", "registry.mirrors.<host>."},
      {"[registry.configs.\"r.local\"]\nzzzzzzzzzz = 1\n", "registry.configs.<host>."},
      {"[registry.configs.\"r.local\".auth]\nzzzzzzzzzz = 1\n", "registry.configs.<host>.auth."},
      {"[registry.configs.\"r.local\".tls]\nzzzzzzzzzz = 1\n", "registry.configs.<host>.tls."},
  };
  const std::set<std::string> documented = DocumentedPaths();
  for (const Table& table : tables) {
    const std::vector<std::string> keys = KeysTheParserLists(table.document);
    EXPECT_FALSE(keys.empty()) << table.document;
    for (const std::string& key : keys) {
      const std::string path = table.prefix + key;
      // A key is documented as itself, or (a table) through the keys under it.
      auto under = documented.lower_bound(path + ".");
      const bool as_table = under != documented.end() && under->starts_with(path + ".");
      EXPECT_TRUE(documented.contains(path) || as_table)
          << path << " is a key the parser knows but berth/config/config_keys.cc does not "
          << "document (berth-config(5) is made from that table)";
    }
  }
}

TEST(ConfigKeysTest, EveryDocumentedKeyParsesWithItsExample) {
  for (const KeyDoc& doc : KeyDocs()) {
    std::string document = Concrete(doc.path) + " = " + std::string(doc.example) + "\n";
    // A client certificate needs its key, and the key its certificate.
    if (doc.path.ends_with(".tls.cert_file")) {
      document += Concrete("registry.configs.<host>.tls.key_file") + " = \"key.pem\"\n";
    } else if (doc.path.ends_with(".tls.key_file")) {
      document += Concrete("registry.configs.<host>.tls.cert_file") + " = \"cert.pem\"\n";
    } else if (doc.path == "peers.tls_cert") {
      document += "peers.tls_key = \"key.pem\"\n";
    } else if (doc.path == "peers.tls_key" || doc.path == "peers.tls_client_ca") {
      document += "peers.tls_cert = \"cert.pem\"\n";
      if (doc.path == "peers.tls_client_ca") document += "peers.tls_key = \"key.pem\"\n";
    }
    Result<Config> parsed = ParseConfig(document, "keys.toml");
    EXPECT_TRUE(parsed.has_value()) << document << (parsed ? "" : parsed.error().ToString());
  }
}

TEST(ConfigKeysTest, EveryRowIsComplete) {
  const std::set<std::string> documented = DocumentedPaths();
  EXPECT_EQ(documented.size(), KeyDocs().size()) << "a path is documented twice";
  for (const KeyDoc& doc : KeyDocs()) {
    EXPECT_FALSE(doc.value.empty()) << doc.path;
    EXPECT_FALSE(doc.default_value.empty()) << doc.path;
    EXPECT_FALSE(doc.example.empty()) << doc.path;
    EXPECT_TRUE(doc.description.ends_with(".")) << doc.path << ": a description is sentences";
  }
}

}  // namespace
}  // namespace berth::config
