#include "berth/sqlite/sqlite.h"

#include <fmt/format.h>

#include <cerrno>
#include <climits>

namespace berth::sqlite {
namespace {

ErrorCode CodeFor(sqlite3* db, int result_code) {
  switch (result_code & 0xff) {
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_TOOBIG:
      return ErrorCode::kResourceExhausted;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      if (result_code == SQLITE_CONSTRAINT_UNIQUE || result_code == SQLITE_CONSTRAINT_PRIMARYKEY ||
          result_code == SQLITE_CONSTRAINT_ROWID) {
        return ErrorCode::kAlreadyExists;
      }
      return ErrorCode::kFailedPrecondition;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorCode::kDataLoss;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return ErrorCode::kPermissionDenied;
    case SQLITE_INTERRUPT:
      return ErrorCode::kCancelled;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN: {
      // The OS error behind an I/O failure tells a full disk from a missing directory.
      int system_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
      if (system_errno == ENOSPC || system_errno == EDQUOT) return ErrorCode::kResourceExhausted;
      if (system_errno == ENOENT) return ErrorCode::kNotFound;
      if (system_errno == EACCES || system_errno == EPERM || system_errno == EROFS) {
        return ErrorCode::kPermissionDenied;
      }
      return ErrorCode::kInternal;
    }
    default:
      return ErrorCode::kInternal;
  }
}

}  // namespace

Error SqliteError(sqlite3* db, int result_code, std::string_view what) {
  std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(result_code);
  return Error(CodeFor(db, result_code),
               fmt::format("{}: {} (sqlite code {})", what, detail, result_code));
}

Result<std::unique_ptr<Database>> Database::Open(const std::filesystem::path& path,
                                                 const DatabaseOptions& options) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (options.create) flags |= SQLITE_OPEN_CREATE;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  UniqueDb db(raw);  // sqlite3_open_v2 allocates a handle even on failure.
  if (rc != SQLITE_OK) {
    return Fail(SqliteError(db.get(), rc, fmt::format("open database {}", path.string())));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  std::unique_ptr<Database> database(new Database(path, std::move(db)));
  auto timeout = options.busy_timeout.count();
  sqlite3_busy_timeout(database->handle(),
                       static_cast<int>(timeout > INT_MAX ? INT_MAX : (timeout < 0 ? 0 : timeout)));

  std::string pragmas =
      fmt::format("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous={};",
                  options.synchronous == Synchronous::kFull ? "FULL" : "NORMAL");
  if (auto set = database->Execute(pragmas); !set) {
    return Fail(set.error().WithContext(fmt::format("open database {}", path.string())));
  }
  // journal_mode reports what it ended up as; a filesystem without shared memory support keeps
  // the old mode, which would silently change our concurrency story.
  BERTH_ASSIGN_OR_RETURN(Statement mode, database->Prepare("PRAGMA journal_mode"));
  BERTH_ASSIGN_OR_RETURN(bool has_row, mode.Step());
  if (!has_row || mode.ColumnText(0) != "wal") {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("database {} could not switch to WAL mode (journal_mode is {}); put it "
                            "on a local filesystem",
                            path.string(), has_row ? mode.ColumnText(0) : "unknown"));
  }
  return database;
}

Result<void> Database::Execute(std::string_view sql) {
  std::string text(sql);
  int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    constexpr size_t kShown = 60;
    std::string shown = text.size() > kShown ? text.substr(0, kShown) + "…" : text;
    return Fail(SqliteError(db_.get(), rc, fmt::format("execute \"{}\"", shown)));
  }
  return Ok();
}

Result<Statement> Database::Prepare(std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  Statement::UniqueStmt stmt(raw);
  if (rc != SQLITE_OK) {
    return Fail(SqliteError(db_.get(), rc, fmt::format("prepare \"{}\"", sql)));
  }
  if (stmt == nullptr) {
    return Fail(ErrorCode::kInternal, fmt::format("prepare \"{}\": no statement in text", sql));
  }
  return Statement(db_.get(), std::move(stmt));
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_.get()); }

int64_t Database::Changes() const { return sqlite3_changes64(db_.get()); }

Result<int64_t> Database::UserVersion() {
  BERTH_ASSIGN_OR_RETURN(Statement query, Prepare("PRAGMA user_version"));
  BERTH_ASSIGN_OR_RETURN(bool has_row, query.Step());
  if (!has_row) return Fail(ErrorCode::kInternal, "PRAGMA user_version returned no row");
  return query.ColumnInt64(0);
}

void Statement::NoteBindResult(int result_code, int index) {
  if (result_code != SQLITE_OK && !bind_error_) {
    bind_error_ = SqliteError(db_, result_code, fmt::format("bind parameter {}", index));
  }
}

Statement& Statement::Bind(int index, int64_t value) {
  NoteBindResult(sqlite3_bind_int64(stmt_.get(), index, value), index);
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  NoteBindResult(sqlite3_bind_text64(stmt_.get(), index, text.data(), text.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8),
                 index);
  return *this;
}

Statement& Statement::Bind(int index, std::optional<int64_t> value) {
  return value ? Bind(index, *value) : BindNull(index);
}

Statement& Statement::BindBlob(int index, std::span<const std::byte> bytes) {
  // A zero-length blob must still be a blob, not NULL: SQLite needs a non-null pointer for that.
  static const std::byte kEmpty{};
  const void* data = bytes.empty() ? &kEmpty : bytes.data();
  NoteBindResult(sqlite3_bind_blob64(stmt_.get(), index, data, bytes.size(), SQLITE_TRANSIENT),
                 index);
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  return BindBlob(index, std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

Statement& Statement::BindNull(int index) {
  NoteBindResult(sqlite3_bind_null(stmt_.get(), index), index);
  return *this;
}

Result<bool> Statement::Step() {
  if (bind_error_) {
    Error error = std::move(*bind_error_);
    bind_error_.reset();
    return Fail(std::move(error));
  }
  if (done_) return false;
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) {
    done_ = true;
    return false;
  }
  Error error = SqliteError(db_, rc, fmt::format("run \"{}\"", sqlite3_sql(stmt_.get())));
  sqlite3_reset(stmt_.get());
  return Fail(std::move(error));
}

Result<void> Statement::Run() {
  while (true) {
    BERTH_ASSIGN_OR_RETURN(bool has_row, Step());
    if (!has_row) return Ok();
  }
}

int64_t Statement::ColumnInt64(int column) const {
  return sqlite3_column_int64(stmt_.get(), column);
}

std::string Statement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
  if (text == nullptr) return {};
  int size = sqlite3_column_bytes(stmt_.get(), column);
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(size));
}

std::string Statement::ColumnBlob(int column) const {
  const void* data = sqlite3_column_blob(stmt_.get(), column);
  if (data == nullptr) return {};
  int size = sqlite3_column_bytes(stmt_.get(), column);
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

bool Statement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

std::optional<int64_t> Statement::ColumnOptionalInt64(int column) const {
  if (ColumnIsNull(column)) return std::nullopt;
  return ColumnInt64(column);
}

void Statement::Reset() {
  sqlite3_reset(stmt_.get());
  done_ = false;
  bind_error_.reset();
}

void Statement::ClearBindings() {
  Reset();
  sqlite3_clear_bindings(stmt_.get());
}

Result<Transaction> Transaction::Begin(Database& db) {
  BERTH_RETURN_IF_ERROR(WithContext(db.Execute("BEGIN IMMEDIATE"), "begin transaction"));
  return Transaction(&db);
}

Transaction::Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)Rollback();
}

Result<void> Transaction::Commit() {
  if (db_ == nullptr) {
    return Fail(ErrorCode::kFailedPrecondition, "commit: transaction already finished");
  }
  Database* db = std::exchange(db_, nullptr);
  auto committed = db->Execute("COMMIT");
  if (!committed) {
    // A failed COMMIT may leave the transaction open (SQLITE_BUSY); make sure it ends here.
    if (!sqlite3_get_autocommit(db->handle())) (void)db->Execute("ROLLBACK");
    return Fail(committed.error().WithContext("commit transaction"));
  }
  return Ok();
}

Result<void> Transaction::Rollback() {
  if (db_ == nullptr) {
    return Fail(ErrorCode::kFailedPrecondition, "rollback: transaction already finished");
  }
  Database* db = std::exchange(db_, nullptr);
  // SQLite may already have rolled back on its own (after SQLITE_FULL, for example).
  if (sqlite3_get_autocommit(db->handle())) return Ok();
  return WithContext(db->Execute("ROLLBACK"), "rollback transaction");
}

namespace {

constexpr std::string_view kCreateSchemaTable =
    "CREATE TABLE IF NOT EXISTS berth_schema (component TEXT PRIMARY KEY NOT NULL, "
    "version INTEGER NOT NULL)";

// The version of `component` in berth_schema, or nullopt when it has no row.
// REQUIRES: berth_schema exists.
Result<std::optional<int64_t>> RecordedVersion(Database& db, std::string_view component) {
  BERTH_ASSIGN_OR_RETURN(Statement select,
                         db.Prepare("SELECT version FROM berth_schema WHERE component = ?1"));
  select.Bind(1, component);
  BERTH_ASSIGN_OR_RETURN(bool has_row, select.Step());
  if (!has_row) return std::optional<int64_t>();
  return std::optional<int64_t>(select.ColumnInt64(0));
}

Result<void> RecordVersion(Database& db, std::string_view component, int64_t version) {
  BERTH_ASSIGN_OR_RETURN(
      Statement upsert,
      db.Prepare("INSERT INTO berth_schema(component, version) VALUES (?1, ?2) "
                 "ON CONFLICT(component) DO UPDATE SET version = excluded.version"));
  upsert.Bind(1, component).Bind(2, version);
  return upsert.Run();
}

}  // namespace

Result<int64_t> SchemaVersion(Database& db, std::string_view component) {
  BERTH_ASSIGN_OR_RETURN(Statement table,
                         db.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'berth_schema'"));
  BERTH_ASSIGN_OR_RETURN(bool exists, table.Step());
  if (!exists) return int64_t{0};
  BERTH_ASSIGN_OR_RETURN(std::optional<int64_t> version, RecordedVersion(db, component));
  return version.value_or(0);
}

Result<void> Migrate(Database& db, std::string_view component,
                     std::span<const Migration> migrations, LegacyVersion legacy) {
  const auto target = static_cast<int64_t>(migrations.size());
  while (true) {
    BERTH_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
    BERTH_RETURN_IF_ERROR(db.Execute(kCreateSchemaTable));
    BERTH_ASSIGN_OR_RETURN(std::optional<int64_t> recorded, RecordedVersion(db, component));
    int64_t version = recorded.value_or(0);
    if (!recorded && legacy == LegacyVersion::kUserVersion) {
      BERTH_ASSIGN_OR_RETURN(version, db.UserVersion());
    }
    if (version > target) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("database {}: {} schema version {} is newer than the {} this berth "
                              "knows; run a newer berth or restore an older database",
                              db.path().string(), component, version, target));
    }
    if (version == target) {
      // Adopting a legacy version records it, so user_version is never consulted again.
      if (!recorded) BERTH_RETURN_IF_ERROR(RecordVersion(db, component, version));
      return txn.Commit();
    }
    const Migration& migration = migrations[static_cast<size_t>(version)];
    std::string context = fmt::format("migrate {} schema of {} to version {} ({})", component,
                                      db.path().string(), version + 1, migration.description);
    BERTH_RETURN_IF_ERROR(WithContext(db.Execute(migration.sql), context));
    BERTH_RETURN_IF_ERROR(WithContext(RecordVersion(db, component, version + 1), context));
    BERTH_RETURN_IF_ERROR(WithContext(txn.Commit(), context));
  }
}

}  // namespace berth::sqlite
