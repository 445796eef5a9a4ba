#include "berth/erofs/tree.h"

#include <fmt/format.h>

#include <algorithm>

namespace berth::erofs {
namespace {

// Linux's limit on symlinks followed in one lookup (MAXSYMLINKS).
constexpr int kMaxSymlinks = 40;

// Whether `target`, a symlink found in the directory `directory_path` (root-relative), names a
// place above the root or an absolute path: the reason given when it cannot be followed.
bool LeavesRoot(std::string_view directory_path, std::string_view target) {
  if (target.starts_with('/')) return true;
  long depth = directory_path.empty()
                   ? 0
                   : std::count(directory_path.begin(), directory_path.end(), '/') + 1;
  size_t pos = 0;
  while (pos <= target.size()) {
    size_t slash = std::min(target.find('/', pos), target.size());
    std::string_view component = target.substr(pos, slash - pos);
    pos = slash + 1;
    if (component.empty() || component == ".") continue;
    depth += component == ".." ? -1 : 1;
    if (depth < 0) return true;
  }
  return false;
}

Error DanglingParent(std::string_view directory_path, std::string_view path,
                     std::string_view target) {
  if (LeavesRoot(directory_path, target)) {
    return Error(ErrorCode::kPermissionDenied,
                 fmt::format("parent \"{}\" is a symlink to {}, outside the layer (symlinks are "
                             "resolved inside the layer, where that path does not exist); the "
                             "layer is refused",
                             path, target));
  }
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("parent \"{}\" is a symlink to {}, which is not a directory in the "
                           "layer; the layer is refused",
                           path, target));
}

}  // namespace

void SetXattr(XattrList& xattrs, const std::string& name, const std::string& value) {
  for (auto& [existing, existing_value] : xattrs) {
    if (existing == name) {
      existing_value = value;
      return;
    }
  }
  xattrs.emplace_back(name, value);
}

Tree::Tree(uint32_t uid, uint32_t gid) : uid_(uid), gid_(gid) {
  root_ = NewNode(NodeType::kDirectory);
  root_->permissions = 0755;
  root_->uid = uid_;
  root_->gid = gid_;
  root_->implicit = true;
  root_->parent = root_;
}

Node* Tree::NewNode(NodeType type) {
  Node& node = nodes_.emplace_back();
  node.type = type;
  return &node;
}

Node* Tree::NewImplicitDirectory(Node* parent, std::string_view name) {
  Node* directory = NewNode(NodeType::kDirectory);
  directory->permissions = 0755;
  directory->uid = uid_;
  directory->gid = gid_;
  directory->implicit = true;
  Link(parent, name, directory);
  return directory;
}

Node* Tree::Lookup(Node* directory, std::string_view name) {
  auto it = directory->children.find(name);
  return it == directory->children.end() ? nullptr : it->second;
}

void Tree::Link(Node* directory, std::string_view name, Node* node) {
  auto it = directory->children.find(name);
  if (it == directory->children.end()) {
    directory->children.emplace(std::string(name), node);
  } else {
    it->second = node;
  }
  if (node->type == NodeType::kDirectory) node->parent = directory;
}

Result<Node*> Tree::FindDirectory(std::string_view path, Missing missing) {
  Node* directory = root_;
  int budget = kMaxSymlinks;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = std::min(path.find('/', pos), path.size());
    std::string_view name = path.substr(pos, slash - pos);
    std::string_view directory_path = path.substr(0, pos == 0 ? 0 : pos - 1);
    std::string_view prefix = path.substr(0, slash);
    pos = slash + 1;
    Node* child = Lookup(directory, name);
    if (child == nullptr) {
      if (missing == Missing::kReturnNull) return nullptr;
      directory = NewImplicitDirectory(directory, name);
      continue;
    }
    if (child->type == NodeType::kDirectory) {
      directory = child;
      continue;
    }
    if (child->type == NodeType::kSymlink) {
      BERTH_ASSIGN_OR_RETURN(Node * target,
                             FollowSymlink(directory, child->symlink_target, budget));
      if (target != nullptr) {
        directory = target;
        continue;
      }
      if (missing == Missing::kReturnNull) return nullptr;
      return Fail(DanglingParent(directory_path, prefix, child->symlink_target));
    }
    if (missing == Missing::kReturnNull) return nullptr;
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("parent \"{}\" is not a directory", prefix));
  }
  return directory;
}

Result<Node*> Tree::FollowSymlink(Node* directory, std::string_view target, int& budget) {
  if (--budget < 0) {
    return Fail(
        ErrorCode::kInvalidArgument,
        fmt::format("too many levels of symlinks resolving {}; the layer is refused", target));
  }
  Node* current = target.starts_with('/') ? root_ : directory;
  size_t pos = 0;
  while (pos <= target.size()) {
    size_t slash = std::min(target.find('/', pos), target.size());
    std::string_view name = target.substr(pos, slash - pos);
    pos = slash + 1;
    if (name.empty() || name == ".") continue;
    if (name == "..") {
      current = current->parent;  // The root's parent is the root.
      continue;
    }
    Node* child = Lookup(current, name);
    if (child == nullptr) return nullptr;
    if (child->type == NodeType::kSymlink) {
      BERTH_ASSIGN_OR_RETURN(child, FollowSymlink(current, child->symlink_target, budget));
      if (child == nullptr) return nullptr;
    }
    if (child->type != NodeType::kDirectory) return nullptr;
    current = child;
  }
  return current;
}

}  // namespace berth::erofs
