// File: berth/erofs/tree.h
//
// Tree is the in-memory namespace of an EROFS image being written: one Node per inode, with
// directories mapping names to nodes (several names may share a node: hardlinks). It holds
// metadata only; file contents live in the image file and a node records where (extents).
// Internal to berth/erofs (ImageWriter builds it from tar entries).
//
// Path resolution follows the rules of archive::TarApplier, so that an image shows what the
// applier would have created: paths are root-relative and already cleaned (no "." or ".."),
// intermediate symlinks are followed inside the tree as if its root were "/" (".." stops at the
// root), the final component is never followed, and a missing intermediate directory is created
// (0755, the implicit owner) when asked to.
//
// Thread safety: one thread at a time. Nodes live as long as the Tree (stable addresses).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/archive/tar_reader.h"
#include "berth/base/result.h"

namespace berth::erofs {

enum class NodeType {
  kRegular,
  kDirectory,
  kSymlink,
  kCharDevice,
  kBlockDevice,
  kFifo,
  kSocket,
};

// A run of file blocks: `blocks` logical blocks from `logical_block` are stored contiguously
// from image block `physical_block`.
struct Extent {
  uint64_t logical_block = 0;
  uint64_t physical_block = 0;
  uint64_t blocks = 0;
};

using XattrList = std::vector<std::pair<std::string, std::string>>;

struct Node {
  NodeType type = NodeType::kRegular;
  uint32_t permissions = 0;  // 07777
  uint32_t uid = 0;
  uint32_t gid = 0;
  archive::TarTime mtime;
  // Regular files: logical size, holes included. Symlinks: the target's length.
  uint64_t size = 0;
  uint32_t device_major = 0;
  uint32_t device_minor = 0;
  std::string symlink_target;
  // Full names ("user.foo"), validated by the writer; set order, no duplicates.
  XattrList xattrs;
  // Regular files: where the stored blocks are, in logical order. Blocks not covered are holes.
  std::vector<Extent> extents;
  // Regular files whose last partial block is stored after the inode: its bytes wait at
  // `tail_offset` of the writer's scratch file. The extents cover the blocks before it.
  uint64_t tail_offset = 0;
  uint32_t tail_size = 0;
  // Directories: entries by name (byte order, as EROFS sorts them) and the containing directory
  // (the root's is itself).
  std::map<std::string, Node*, std::less<>> children;
  Node* parent = nullptr;
  // A directory made only as the parent of other entries (its mtime is set at the end).
  bool implicit = false;
  // A 0/0 character device standing for a whiteout.
  bool whiteout = false;
  // Set by the writer's layout when the image is finished.
  uint32_t nlink = 0;
  uint64_t nid = 0;
  uint32_t ino = 0;  // 0 until the node is found reachable.
};

// Sets `name` to `value` in `xattrs`, replacing an earlier value of the same name.
void SetXattr(XattrList& xattrs, const std::string& name, const std::string& value);

class Tree {
 public:
  // Implicit directories (and the root) are 0755 and owned by `uid`:`gid`.
  Tree(uint32_t uid, uint32_t gid);

  Node* root() { return root_; }
  const Node* root() const { return root_; }

  // A new node that no directory refers to yet.
  Node* NewNode(NodeType type);

  enum class Missing { kCreate, kReturnNull };
  // Resolves the directory `path` (root-relative, cleaned; empty for the root). Missing
  // components are created as implicit directories with kCreate; with kReturnNull the result
  // is nullptr when a component does not resolve to a directory (missing, not a directory, or
  // a symlink whose target is neither). Errors: kInvalidArgument when symlinks loop, and with
  // kCreate when a component is not a directory or is a symlink whose target is not a
  // directory in the tree; kPermissionDenied for such a symlink whose target leads out of the
  // root (absolute, or above it with "..").
  Result<Node*> FindDirectory(std::string_view path, Missing missing);

  // The node named `name` in `directory`, or nullptr.
  static Node* Lookup(Node* directory, std::string_view name);
  // Makes `name` in `directory` refer to `node`, replacing what it named (a replaced directory
  // goes with everything below it). Sets a directory node's parent.
  static void Link(Node* directory, std::string_view name, Node* node);

  // Every node made so far, reachable or not, in creation order.
  std::deque<Node>& nodes() { return nodes_; }

 private:
  Node* NewImplicitDirectory(Node* parent, std::string_view name);
  // Resolves the symlink target `target` found in `directory`; nullptr if it does not lead to
  // a directory of the tree. `budget` counts symlinks still allowed (loops).
  Result<Node*> FollowSymlink(Node* directory, std::string_view target, int& budget);

  std::deque<Node> nodes_;
  uint32_t uid_;
  uint32_t gid_;
  Node* root_;
};

}  // namespace berth::erofs
