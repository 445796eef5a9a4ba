#include "cmd/docgen/docs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <vector>

#include "berth/base/version.h"
#include "berth/config/config_keys.h"

namespace berth::docgen {
namespace {

// The app's subcommands, in the order they were added.
std::vector<const CLI::App*> Subcommands(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App*) { return true; });
}

// Options a reader sees: not the help flag (every page says -h once), not hidden ones.
std::vector<const CLI::Option*> VisibleOptions(const CLI::App& app, bool positional) {
  return app.get_options([&](const CLI::Option* option) {
    if (option->get_group().empty() || option->get_name() == "--help") return false;
    return positional == !option->nonpositional();
  });
}

bool TakesValue(const CLI::Option& option) { return option.get_type_size_max() > 0; }

// "-q, --quiet" or "--platform OS/ARCH" as roff (bold names, italic value).
std::string OptionTerm(const CLI::Option& option) {
  std::vector<std::string> names;
  for (const std::string& name : option.get_snames()) names.push_back("\\fB\\-" + name + "\\fR");
  for (const std::string& name : option.get_lnames()) {
    names.push_back("\\fB\\-\\-" + RoffEscape(name) + "\\fR");
  }
  std::string term = fmt::format("{}", fmt::join(names, ", "));
  if (TakesValue(option)) term += " \\fI" + RoffEscape(option.get_type_name()) + "\\fR";
  return term;
}

void AppendOptions(std::string& page, const std::vector<const CLI::Option*>& options) {
  for (const CLI::Option* option : options) {
    page += ".TP\n" + OptionTerm(*option) + "\n" + RoffEscape(option->get_description()) + "\n";
  }
}

// Paragraphs separated by blank lines, each as a roff paragraph.
void AppendParagraphs(std::string& page, std::string_view text) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string_view::npos) end = text.size();
    page += ".PP\n" + RoffEscape(text.substr(start, end - start)) + "\n";
    start = end + 2;
  }
}

void AppendCommand(std::string& page, const CLI::App& command, const std::string& path) {
  std::string heading = path;
  for (const CLI::Option* argument : VisibleOptions(command, /*positional=*/true)) {
    heading += " " + argument->get_name(/*positional=*/true);
  }
  page += ".SS \"" + RoffEscape(heading) + "\"\n" + RoffEscape(command.get_description()) + "\n";
  for (const CLI::Option* argument : VisibleOptions(command, /*positional=*/true)) {
    page += ".TP\n\\fI" + RoffEscape(argument->get_name(true)) + "\\fR\n" +
            RoffEscape(argument->get_description()) + "\n";
  }
  AppendOptions(page, VisibleOptions(command, /*positional=*/false));
  for (const CLI::App* sub : Subcommands(command)) {
    AppendCommand(page, *sub, path + " " + sub->get_name());
  }
}

std::string Header(std::string_view name, std::string_view section, std::string_view manual) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return fmt::format(".TH {} {} \"\" \"berth {}\" \"{}\"\n", upper, section, Version(), manual);
}

// The table a key belongs to: "" (top level), "pull", "registry".
std::string_view TableOf(std::string_view path) {
  size_t dot = path.find('.');
  return dot == std::string_view::npos ? std::string_view() : path.substr(0, dot);
}

// A shell word list, e.g. "a b c".
std::string Words(const std::vector<std::string>& words) {
  return fmt::format("{}", fmt::join(words, " "));
}

// Every name of the options of `app` (help included: it works everywhere), and those that take
// a value, split by what the value is.
struct OptionWords {
  std::vector<std::string> all;
  std::vector<std::string> with_value;
  std::vector<std::string> with_path;  // type FILE or DIR (--config, --root): paths
};

OptionWords WordsOf(const CLI::App& app) {
  OptionWords words;
  for (const CLI::Option* option : app.get_options()) {
    if (!option->nonpositional()) continue;
    std::vector<std::string> names;
    for (const std::string& name : option->get_snames()) names.push_back("-" + name);
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    words.all.insert(words.all.end(), names.begin(), names.end());
    if (!TakesValue(*option)) continue;
    words.with_value.insert(words.with_value.end(), names.begin(), names.end());
    const std::string type = option->get_type_name();
    if (type == "FILE" || type == "DIR") {
      words.with_path.insert(words.with_path.end(), names.begin(), names.end());
    }
  }
  return words;
}

// The completion function's start: it finds the global options typed (and their values) and
// the command words, and completes the value of a global option that takes a path.
std::string CompletionPrologue(const std::string& program, const OptionWords& global) {
  return fmt::format(
      "# bash completion for {0} {1}, written by berth-docgen from the command line's own\n"
      "# definitions (cmd/docgen). Completes commands, options, paths, and the names of the\n"
      "# stored images where a command takes one.\n"
      "_{0}() {{\n"
      "  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}\n"
      "  local global_value=' {2} ' global_path=' {3} '\n"
      "  local -a global_args=()\n"
      "  local command='' i word\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    word=${{COMP_WORDS[i]}}\n"
      "    if [[ $global_value == *\" $word \"* ]]; then\n"
      "      global_args+=(\"$word\" \"${{COMP_WORDS[i+1]}}\"); ((i++)); continue\n"
      "    fi\n"
      "    if [[ $word != -* ]]; then command+=${{command:+ }}$word; fi\n"
      "  done\n"
      "  if [[ $global_path == *\" $prev \"* ]]; then\n"
      "    COMPREPLY=($(compgen -f -- \"$cur\")); return\n"
      "  fi\n"
      "  local options='' subcommands='' path_options='' depth=0\n"
      "  local -a arguments=()\n"
      "  case $command in\n",
      program, Version(), Words(global.with_value), Words(global.with_path));
}

// Every command and subcommand with its path ("content ls"), deepest first: the completion's
// case patterns also match the words after a path, so "content ls" must be tried before
// "content".
std::vector<std::pair<std::string, const CLI::App*>> CommandPaths(const CLI::App& app) {
  std::vector<std::pair<std::string, const CLI::App*>> commands;
  for (const CLI::App* command : Subcommands(app))
    commands.emplace_back(command->get_name(), command);
  for (size_t i = 0; i < commands.size(); ++i) {
    for (const CLI::App* sub : Subcommands(*commands[i].second)) {
      commands.emplace_back(commands[i].first + " " + sub->get_name(), sub);
    }
  }
  std::stable_sort(commands.begin(), commands.end(), [](const auto& a, const auto& b) {
    return std::count(a.first.begin(), a.first.end(), ' ') >
           std::count(b.first.begin(), b.first.end(), ' ');
  });
  return commands;
}

// What each argument of `command` is, in order (the last one repeats): a stored image's name
// for the REF of the commands that act on one, a directory for a DIR, else nothing to offer.
std::vector<std::string> ArgumentKinds(const CLI::App& command, const std::string& path,
                                       const std::set<std::string>& stored_image_commands) {
  std::vector<std::string> kinds;
  for (const CLI::Option* argument : VisibleOptions(command, /*positional=*/true)) {
    const std::string name = argument->get_name(/*positional=*/true);
    if (name == "REF" && stored_image_commands.contains(path)) {
      kinds.emplace_back("image");
    } else if (name == "DIR") {
      kinds.emplace_back("directory");
    } else {
      kinds.emplace_back("none");
    }
  }
  return kinds;
}

// The case that sets what `command` (at `path`) offers.
std::string CompletionCase(const std::string& path, const CLI::App& command,
                           const OptionWords& global,
                           const std::set<std::string>& stored_image_commands) {
  const OptionWords own = WordsOf(command);
  std::vector<std::string> subcommands;
  for (const CLI::App* sub : Subcommands(command)) subcommands.push_back(sub->get_name());
  return fmt::format(
      "    \"{0}\" | \"{0} \"*) options='{1} {2}' subcommands='{3}' path_options=' {4} ' "
      "arguments=({5}) depth={6} ;;\n",
      path, Words(own.all), Words(global.all), Words(subcommands), Words(own.with_path),
      Words(ArgumentKinds(command, path, stored_image_commands)),
      std::count(path.begin(), path.end(), ' ') + 1);
}

// The rest: no command yet offers the global options and the commands; then an option's path
// value, an option, a subcommand, or the argument at the cursor's position.
std::string CompletionEpilogue(const std::string& program, const OptionWords& global,
                               const std::vector<std::string>& top_commands) {
  return fmt::format(
      "    *) options='{0}' subcommands='{1}' ;;\n"
      "  esac\n"
      "  if [[ $path_options == *\" $prev \"* ]]; then\n"
      "    COMPREPLY=($(compgen -f -- \"$cur\")); return\n"
      "  fi\n"
      "  if [[ $cur == -* ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$options\" -- \"$cur\")); return\n"
      "  fi\n"
      "  if ((${{#arguments[@]}} == 0)); then\n"
      "    COMPREPLY=($(compgen -W \"$subcommands\" -- \"$cur\")); return\n"
      "  fi\n"
      "  local -a typed=($command)\n"
      "  local index=$((${{#typed[@]}} - depth))\n"
      "  ((index < ${{#arguments[@]}})) || index=$((${{#arguments[@]}} - 1))\n"
      "  case ${{arguments[index]}} in\n"
      "    image) COMPREPLY=($(compgen -W \"$({2} \"${{global_args[@]}}\" images --names "
      "2>/dev/null)\" -- \"$cur\")) ;;\n"
      "    directory) COMPREPLY=($(compgen -d -- \"$cur\")) ;;\n"
      "  esac\n"
      "}}\n"
      "complete -F _{2} {2}\n",
      Words(global.all), Words(top_commands), program);
}

}  // namespace

std::string RoffEscape(std::string_view text) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    line_start = c == '\n';
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
  }
  return out;
}

std::string ManPage(const CLI::App& app, const PageInfo& info) {
  const std::string& name = app.get_name();
  std::string page = Header(name, info.section, info.manual);
  std::string summary = app.get_description();
  if (summary.starts_with(name + ": ")) summary = summary.substr(name.size() + 2);
  page += ".SH NAME\n" + RoffEscape(name) + " \\- " + RoffEscape(summary) + "\n";
  page += ".SH SYNOPSIS\n.B " + RoffEscape(name) + "\n[\\fIOPTIONS\\fR]";
  if (!Subcommands(app).empty()) page += " \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]";
  page += "\n.SH DESCRIPTION\n";
  AppendParagraphs(page, info.description);
  page += ".SH OPTIONS\n.TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nPrint the help";
  page += Subcommands(app).empty() ? "" : " (after a command: that command's help)";
  page += ".\n";
  AppendOptions(page, VisibleOptions(app, /*positional=*/false));
  if (!Subcommands(app).empty()) {
    page += ".SH COMMANDS\n";
    for (const CLI::App* command : Subcommands(app)) {
      AppendCommand(page, *command, name + " " + command->get_name());
    }
  }
  if (!info.files.empty()) {
    page += ".SH FILES\n";
    AppendParagraphs(page, info.files);
  }
  page += ".SH SEE ALSO\n" + RoffEscape(info.see_also) + "\n";
  return page;
}

std::string ConfigManPage() {
  std::string page = Header("berth-config", "5", "File Formats");
  page += ".SH NAME\nberth\\-config \\- the berth configuration file, /etc/berth/config.toml\n";
  page += ".SH DESCRIPTION\n";
  AppendParagraphs(
      page,
      "berthd(8) and berth(1) read their configuration from a TOML file, "
      "/etc/berth/config.toml unless --config names another. Every key is optional and keeps "
      "its default when absent. A key that berth does not know, inside a table berth defines, "
      "is an error that names it, so a typo never falls back to a default silently.\n\n"
      "berth reads two spellings. Its own, shown below, and containerd's: a file with a "
      "top-level plugins table or version key is read as a containerd config.toml, from which "
      "berth takes the CRI plugin's registry section (version 1, 2 and 3 spellings, "
      "including the deprecated auths) and ignores everything else, containerd's root and "
      "state included. For every key below, the containerd column names the setting with the "
      "same meaning in a containerd config.toml; only the registry ones are read from it.\n\n"
      "In the key paths, <host> is a registry host as written in image references "
      "(\"docker.io\", \"r.local:5000\"; \"*\" in mirrors for every host) and <name> a header "
      "name. Secrets (passwords, auth, identity tokens, header values) are never logged or "
      "printed.");
  const std::map<std::string_view, std::string_view> headings = {
      {"", "TOP-LEVEL KEYS"}, {"pull", "[pull]"}, {"registry", "[registry]"}, {"peers", "[peers]"}};
  std::string_view table = "-";
  for (const config::KeyDoc& doc : config::KeyDocs()) {
    if (TableOf(doc.path) != table) {
      table = TableOf(doc.path);
      page += ".SH \"" + RoffEscape(headings.at(table)) + "\"\n";
    }
    page += ".TP\n\\fB" + RoffEscape(doc.path) + "\\fR = \\fI" + RoffEscape(doc.value) + "\\fR\n";
    page += RoffEscape(doc.description) + "\n.br\nDefault: " + RoffEscape(doc.default_value) +
            ". Example: " + RoffEscape(doc.example) + ".\n";
    if (!doc.containerd.empty()) {
      page += ".br\ncontainerd: " + RoffEscape(doc.containerd) + ".\n";
    }
  }
  page += ".SH FILES\n.TP\n/etc/berth/config.toml\nThe default configuration file.\n";
  page += ".SH SEE ALSO\nberthd(8), berth(1)\n";
  return page;
}

std::string BashCompletion(const CLI::App& app,
                           const std::set<std::string>& stored_image_commands) {
  const OptionWords global = WordsOf(app);
  std::string script = CompletionPrologue(app.get_name(), global);
  for (const auto& [path, command] : CommandPaths(app)) {
    script += CompletionCase(path, *command, global, stored_image_commands);
  }
  std::vector<std::string> top_commands;
  for (const CLI::App* command : Subcommands(app)) top_commands.push_back(command->get_name());
  return script + CompletionEpilogue(app.get_name(), global, top_commands);
}

}  // namespace berth::docgen
