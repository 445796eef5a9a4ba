// File: berth/sqlite/sqlite.h
//
// A small RAII layer over SQLite for berth's metadata: Database (one connection), Statement (one
// prepared statement), Transaction (BEGIN IMMEDIATE … COMMIT, rolled back unless committed) and
// Migrate() (schema versions kept per component in the table berth_schema).
//
//   BERTH_ASSIGN_OR_RETURN(auto db, Database::Open(path, {.synchronous = Synchronous::kFull}));
//   BERTH_RETURN_IF_ERROR(Migrate(*db, "items", kMigrations));
//   BERTH_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(*db));
//   BERTH_ASSIGN_OR_RETURN(Statement insert, db->Prepare("INSERT INTO t(k, v) VALUES (?1, ?2)"));
//   insert.Bind(1, key).Bind(2, value);
//   BERTH_RETURN_IF_ERROR(insert.Run());
//   BERTH_RETURN_IF_ERROR(txn.Commit());
//
// Errors carry SQLite's own message. Codes: SQLITE_FULL (and an I/O error whose errno is ENOSPC
// or EDQUOT),
// SQLITE_NOMEM, SQLITE_TOOBIG -> kResourceExhausted; SQLITE_BUSY, SQLITE_LOCKED -> kUnavailable
// (another connection holds the write lock longer than busy_timeout; safe to retry); a UNIQUE or
// PRIMARY KEY violation -> kAlreadyExists; other constraint violations (FOREIGN KEY, NOT NULL,
// CHECK) -> kFailedPrecondition; SQLITE_CORRUPT, SQLITE_NOTADB -> kDataLoss; SQLITE_READONLY,
// SQLITE_PERM, SQLITE_AUTH -> kPermissionDenied; SQLITE_CANTOPEN and other I/O errors ->
// kNotFound when the errno is ENOENT (a missing directory), kPermissionDenied for EACCES, EPERM
// and EROFS, else kInternal; SQLITE_INTERRUPT ->
// kCancelled; everything else (syntax errors, misuse) -> kInternal.
//
// Thread safety: a Database and every Statement and Transaction made from it must be used by one
// thread at a time (the connection is opened with SQLITE_OPEN_NOMUTEX). Either give each thread
// its own Database on the same file (WAL lets readers run beside one writer; writers queue on
// busy_timeout), or guard a shared Database with a mutex held across each unit of work. Berth's
// snapshotters do the latter. Statements and Transactions borrow their Database, which must
// outlive them. All calls block on disk I/O.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "berth/base/c_handle.h"
#include "berth/base/result.h"

namespace berth::sqlite {

// PRAGMA synchronous. In WAL mode kNormal never corrupts the database but may lose the last
// transactions on power loss; kFull makes each COMMIT durable before it returns.
enum class Synchronous { kNormal, kFull };

struct DatabaseOptions {
  Synchronous synchronous = Synchronous::kFull;
  // How long a statement waits for another connection's lock before failing with kUnavailable.
  std::chrono::milliseconds busy_timeout{5000};
  // Create the file (but not its directory) when missing.
  bool create = true;
};

// Maps a SQLite result code to an Error. `db` (may be null) supplies the detailed message;
// `what` names the operation ("prepare …", "insert snapshot").
Error SqliteError(sqlite3* db, int result_code, std::string_view what);

class Statement;

// One SQLite connection, in WAL mode with foreign keys enforced.
class Database {
 public:
  // Opens (and, with options.create, creates) the database at `path`, then sets journal_mode=WAL,
  // foreign_keys=ON, busy_timeout and synchronous. Errors as in the file comment.
  static Result<std::unique_ptr<Database>> Open(const std::filesystem::path& path,
                                                const DatabaseOptions& options = {});

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database() = default;

  const std::filesystem::path& path() const { return path_; }

  // Runs one or more ';'-separated statements that return no rows of interest (DDL, PRAGMA).
  Result<void> Execute(std::string_view sql);

  // Compiles one statement. kInternal (with SQLite's message) on a syntax error.
  Result<Statement> Prepare(std::string_view sql);

  // The rowid of the last successful INSERT on this connection.
  int64_t LastInsertRowId() const;
  // Rows changed by the last INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() const;

  // PRAGMA user_version. berth kept the snapshotters' schema version there before berth_schema;
  // Migrate() reads it only for LegacyVersion::kUserVersion.
  Result<int64_t> UserVersion();

  // The raw handle, for what this wrapper does not cover. Owned by the Database.
  sqlite3* handle() const { return db_.get(); }

 private:
  using UniqueDb = UniqueHandle<sqlite3, sqlite3_close_v2>;
  Database(std::filesystem::path path, UniqueDb db) : path_(std::move(path)), db_(std::move(db)) {}

  std::filesystem::path path_;
  UniqueDb db_;
};

// One prepared statement. Parameters are numbered from 1, columns from 0.
//
// Bind*() calls chain and never fail on their own: the first binding error (an index out of
// range, out of memory) is remembered and returned by the next Step()/Run(), so call sites stay
// short. Bound text and blobs are copied (SQLITE_TRANSIENT).
class Statement {
 public:
  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  // Binds TEXT. (A const char* argument binds text too.)
  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, const char* text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, const std::string& text) {
    return Bind(index, std::string_view(text));
  }
  // Binds NULL when `value` is empty.
  Statement& Bind(int index, std::optional<int64_t> value);
  Statement& BindBlob(int index, std::span<const std::byte> bytes);
  Statement& BindBlob(int index, std::string_view bytes);
  Statement& BindNull(int index);

  // Advances to the next row: true when a row is available through the column getters, false
  // when the statement is done. A pending binding error is returned first.
  Result<bool> Step();

  // Steps until done, ignoring rows (for INSERT/UPDATE/DELETE).
  Result<void> Run();

  // Column getters for the current row. REQUIRES: the last Step() returned true.
  int64_t ColumnInt64(int column) const;
  std::string ColumnText(int column) const;  // "" for NULL
  std::string ColumnBlob(int column) const;  // bytes; "" for NULL
  bool ColumnIsNull(int column) const;
  std::optional<int64_t> ColumnOptionalInt64(int column) const;

  // Makes the statement ready to run again; bindings are kept until rebound or cleared.
  void Reset();
  // Reset() plus clearing every binding to NULL.
  void ClearBindings();

 private:
  friend class Database;
  using UniqueStmt = UniqueHandle<sqlite3_stmt, sqlite3_finalize>;
  Statement(sqlite3* db, UniqueStmt stmt) : db_(db), stmt_(std::move(stmt)) {}
  void NoteBindResult(int result_code, int index);

  sqlite3* db_;
  UniqueStmt stmt_;
  std::optional<Error> bind_error_;
  bool done_ = false;
};

// A write transaction started with BEGIN IMMEDIATE, so the write lock is taken up front and a
// busy database fails at Begin() (kUnavailable after busy_timeout) rather than half way through.
// Destroying an uncommitted Transaction rolls it back. Transactions do not nest.
class Transaction {
 public:
  static Result<Transaction> Begin(Database& db);

  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  // COMMIT. On failure SQLite's transaction is rolled back and the error returned (kUnavailable
  // if a reader still blocks a checkpoint past busy_timeout, kResourceExhausted on a full disk).
  // REQUIRES: not already committed or rolled back.
  Result<void> Commit();
  // Explicit ROLLBACK; also what the destructor does.
  Result<void> Rollback();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;  // null once finished
};

// One step of a schema. Migration i (0-based) of a list moves the schema from version i to
// i + 1. Never edit or reorder a migration that has shipped; append a new one.
struct Migration {
  std::string_view description;
  std::string_view sql;  // one or more statements
};

// Where a component kept its schema version before berth_schema existed.
enum class LegacyVersion {
  kNone,         // nowhere: a component without a berth_schema row is at version 0
  kUserVersion,  // PRAGMA user_version (the snapshotters' schema, up to berth's berth_schema)
};

// Brings the schema of `component` ("images", "snapshots") in `db` to version
// migrations.size(). The version of each component is a row of the table
// berth_schema(component, version), created on first use, so several components keep
// independent schemas in one database file. Each pending migration runs with its version bump in
// one transaction, so a failure (or crash) leaves the schema at the last complete version; the
// version is read inside that transaction, so connections migrating at once do not collide.
// With LegacyVersion::kUserVersion, a component that has no berth_schema row yet starts from
// PRAGMA user_version, so a database written before berth_schema opens without re-running the
// migrations it already has.
// Errors: kFailedPrecondition when the schema is newer than `migrations` (written by a newer
// berth); a failing migration returns its SQLite error with the migration named.
Result<void> Migrate(Database& db, std::string_view component,
                     std::span<const Migration> migrations,
                     LegacyVersion legacy = LegacyVersion::kNone);

// The schema version of `component` recorded in berth_schema; 0 when it has none (or the table
// does not exist yet).
Result<int64_t> SchemaVersion(Database& db, std::string_view component);

}  // namespace berth::sqlite
