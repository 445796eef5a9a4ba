#include "berth/sqlite/sqlite.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <string>

#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth::sqlite {
namespace {

using ::berth::testing::FailsWith;

using ::testing::HasSubstr;

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("sqlite");
    ASSERT_OK(dir);
    dir_.emplace(std::move(*dir));
  }

  std::unique_ptr<Database> OpenDb(DatabaseOptions options = {}) {
    auto db = Database::Open(path(), options);
    EXPECT_OK(db);
    return db ? std::move(*db) : nullptr;
  }

  std::string QueryText(Database& db, std::string_view sql) {
    auto stmt = db.Prepare(sql);
    EXPECT_OK(stmt);
    if (!stmt) return "";
    auto row = stmt->Step();
    EXPECT_TRUE(row && *row);
    return stmt->ColumnText(0);
  }

  int64_t Count(Database& db, std::string_view table) {
    auto stmt = db.Prepare(std::string("SELECT count(*) FROM ") + std::string(table));
    EXPECT_OK(stmt);
    auto row = stmt->Step();
    EXPECT_TRUE(row && *row);
    return stmt->ColumnInt64(0);
  }

  std::filesystem::path path() const { return dir_->path() / "test.db"; }

  std::optional<berth::testing::TempDir> dir_;
};

TEST_F(SqliteTest, OpenSetsWalForeignKeysAndSynchronous) {
  auto db = OpenDb({.synchronous = Synchronous::kFull});
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(std::filesystem::exists(path()));
  EXPECT_EQ(QueryText(*db, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryText(*db, "PRAGMA foreign_keys"), "1");
  EXPECT_EQ(QueryText(*db, "PRAGMA synchronous"), "2");  // FULL
  EXPECT_EQ(QueryText(*db, "PRAGMA busy_timeout"), "5000");

  db.reset();
  auto normal =
      OpenDb({.synchronous = Synchronous::kNormal, .busy_timeout = std::chrono::milliseconds(7)});
  ASSERT_NE(normal, nullptr);
  EXPECT_EQ(QueryText(*normal, "PRAGMA synchronous"), "1");  // NORMAL
  EXPECT_EQ(QueryText(*normal, "PRAGMA busy_timeout"), "7");
}

TEST_F(SqliteTest, OpenWithoutCreateOrInMissingDirectoryFails) {
  auto missing = Database::Open(path(), {.create = false});
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message(), HasSubstr(path().string()));

  auto no_dir = Database::Open(dir_->path() / "no" / "such" / "dir.db");
  ASSERT_FALSE(no_dir);
  EXPECT_THAT(no_dir, FailsWith(ErrorCode::kNotFound));
}

TEST_F(SqliteTest, NotADatabaseIsDataLoss) {
  std::FILE* file = std::fopen(path().c_str(), "w");
  ASSERT_NE(file, nullptr);
  std::string junk(4096, 'x');
  std::fwrite(junk.data(), 1, junk.size(), file);
  std::fclose(file);
  auto db = Database::Open(path());
  ASSERT_FALSE(db);
  EXPECT_THAT(db, FailsWith(ErrorCode::kDataLoss));
}

TEST_F(SqliteTest, BindAndReadEveryType) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute("CREATE TABLE t(i INTEGER, s TEXT, b BLOB, n INTEGER)"));
  auto insert = db->Prepare("INSERT INTO t(i, s, b, n) VALUES (?1, ?2, ?3, ?4)");
  ASSERT_OK(insert);
  const std::string blob("a\0b\xff", 4);
  insert->Bind(1, int64_t{1} << 40).Bind(2, "héllo").BindBlob(3, blob).BindNull(4);
  ASSERT_TRUE(insert->Run());
  EXPECT_EQ(db->Changes(), 1);
  EXPECT_EQ(db->LastInsertRowId(), 1);

  // Reuse the statement with new bindings.
  insert->Reset();
  insert->Bind(1, 7)
      .Bind(2, std::string("second"))
      .BindBlob(3, std::string_view())
      .Bind(4, std::optional<int64_t>(9));
  ASSERT_TRUE(insert->Run());
  EXPECT_EQ(db->LastInsertRowId(), 2);

  auto select = db->Prepare("SELECT i, s, b, n FROM t ORDER BY rowid");
  ASSERT_TRUE(select);
  auto row = select->Step();
  ASSERT_TRUE(row && *row);
  EXPECT_EQ(select->ColumnInt64(0), int64_t{1} << 40);
  EXPECT_EQ(select->ColumnText(1), "héllo");
  EXPECT_EQ(select->ColumnBlob(2), blob);
  EXPECT_TRUE(select->ColumnIsNull(3));
  EXPECT_EQ(select->ColumnOptionalInt64(3), std::nullopt);
  row = select->Step();
  ASSERT_TRUE(row && *row);
  EXPECT_EQ(select->ColumnInt64(0), 7);
  EXPECT_EQ(select->ColumnText(1), "second");
  EXPECT_FALSE(select->ColumnIsNull(2));  // An empty blob is not NULL.
  EXPECT_EQ(select->ColumnBlob(2), "");
  EXPECT_EQ(select->ColumnOptionalInt64(3), 9);
  row = select->Step();
  ASSERT_TRUE(row);
  EXPECT_FALSE(*row);
  // Stepping a finished statement stays finished until Reset().
  row = select->Step();
  ASSERT_TRUE(row);
  EXPECT_FALSE(*row);
  select->Reset();
  row = select->Step();
  ASSERT_TRUE(row && *row);
}

TEST_F(SqliteTest, BindingErrorIsReportedByStep) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute("CREATE TABLE t(i INTEGER)"));
  auto insert = db->Prepare("INSERT INTO t(i) VALUES (?1)");
  ASSERT_TRUE(insert);
  insert->Bind(1, 1).Bind(5, 2);  // There is no parameter 5.
  auto run = insert->Run();
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().code(), ErrorCode::kInternal);
  EXPECT_THAT(run.error().message(), HasSubstr("bind parameter 5"));
  EXPECT_EQ(Count(*db, "t"), 0);
}

TEST_F(SqliteTest, SyntaxErrorNamesTheStatement) {
  auto db = OpenDb();
  auto stmt = db->Prepare("SELEC 1");
  ASSERT_FALSE(stmt);
  EXPECT_EQ(stmt.error().code(), ErrorCode::kInternal);
  EXPECT_THAT(stmt.error().message(), HasSubstr("SELEC 1"));
  EXPECT_THAT(stmt.error().message(), HasSubstr("syntax error"));
}

TEST_F(SqliteTest, ConstraintViolationsMapToCodes) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute(
      "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);"
      "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));"));
  ASSERT_TRUE(db->Execute("INSERT INTO parent(id, name) VALUES (1, 'a')"));

  auto duplicate = db->Execute("INSERT INTO parent(name) VALUES ('a')");
  ASSERT_FALSE(duplicate);
  EXPECT_THAT(duplicate, FailsWith(ErrorCode::kAlreadyExists));
  EXPECT_THAT(duplicate.error().message(), HasSubstr("UNIQUE"));

  auto same_key = db->Execute("INSERT INTO parent(id, name) VALUES (1, 'b')");
  ASSERT_FALSE(same_key);
  EXPECT_EQ(same_key.error().code(), ErrorCode::kAlreadyExists);

  auto not_null = db->Execute("INSERT INTO parent(name) VALUES (NULL)");
  ASSERT_FALSE(not_null);
  EXPECT_EQ(not_null.error().code(), ErrorCode::kFailedPrecondition);

  // foreign_keys=ON is in force.
  auto dangling = db->Execute("INSERT INTO child(parent_id) VALUES (42)");
  ASSERT_FALSE(dangling);
  EXPECT_EQ(dangling.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(dangling.error().message(), HasSubstr("FOREIGN KEY"));
}

TEST_F(SqliteTest, FullDatabaseIsResourceExhausted) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute("CREATE TABLE t(b BLOB)"));
  // Cap the file at a few pages, the way a full disk would stop it growing.
  ASSERT_TRUE(db->Execute("PRAGMA max_page_count = 8"));
  auto insert = db->Prepare("INSERT INTO t(b) VALUES (?1)");
  ASSERT_TRUE(insert);
  insert->BindBlob(1, std::string(64 * 1024, 'z'));
  auto run = insert->Run();
  ASSERT_FALSE(run);
  EXPECT_THAT(run, FailsWith(ErrorCode::kResourceExhausted));
}

TEST_F(SqliteTest, TransactionCommitsOrRollsBackOnDestruction) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute("CREATE TABLE t(i INTEGER)"));
  {
    auto txn = Transaction::Begin(*db);
    ASSERT_OK(txn);
    ASSERT_TRUE(db->Execute("INSERT INTO t VALUES (1)"));
    // Dropped without Commit().
  }
  EXPECT_EQ(Count(*db, "t"), 0);
  {
    auto txn = Transaction::Begin(*db);
    ASSERT_TRUE(txn);
    ASSERT_TRUE(db->Execute("INSERT INTO t VALUES (2)"));
    ASSERT_TRUE(txn->Commit());
    auto again = txn->Commit();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code(), ErrorCode::kFailedPrecondition);
  }
  EXPECT_EQ(Count(*db, "t"), 1);
  {
    auto txn = Transaction::Begin(*db);
    ASSERT_TRUE(txn);
    ASSERT_TRUE(db->Execute("INSERT INTO t VALUES (3)"));
    ASSERT_TRUE(txn->Rollback());
  }
  EXPECT_EQ(Count(*db, "t"), 1);

  // The committed row is visible to a second connection.
  auto other = OpenDb();
  EXPECT_EQ(Count(*other, "t"), 1);
}

TEST_F(SqliteTest, BusyWriterIsUnavailable) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute("CREATE TABLE t(i INTEGER)"));
  auto other = OpenDb({.busy_timeout = std::chrono::milliseconds(20)});
  auto held = Transaction::Begin(*db);
  ASSERT_TRUE(held);
  auto blocked = Transaction::Begin(*other);
  ASSERT_FALSE(blocked);
  EXPECT_THAT(blocked, FailsWith(ErrorCode::kUnavailable));
  // WAL: a reader is not blocked by the writer.
  EXPECT_EQ(Count(*other, "t"), 0);
  ASSERT_TRUE(held->Commit());
  auto now_free = Transaction::Begin(*other);
  EXPECT_OK(now_free);
}

constexpr std::array<Migration, 2> kMigrations = {{
    {"create items", "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"},
    {"add size",
     "ALTER TABLE items ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
     "CREATE INDEX items_by_name ON items(name);"},
}};

TEST_F(SqliteTest, MigrateAppliesPendingStepsOnce) {
  auto db = OpenDb();
  ASSERT_TRUE(Migrate(*db, "items", std::span(kMigrations).first(1)));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 1);
  ASSERT_TRUE(db->Execute("INSERT INTO items(name) VALUES ('kept')"));

  ASSERT_TRUE(Migrate(*db, "items", kMigrations));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 2);
  EXPECT_EQ(QueryText(*db, "SELECT name || ':' || size FROM items"), "kept:0");

  // Running again (a restart) changes nothing.
  ASSERT_TRUE(Migrate(*db, "items", kMigrations));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 2);
  EXPECT_EQ(Count(*db, "items"), 1);
}

TEST_F(SqliteTest, ComponentsKeepIndependentVersions) {
  auto db = OpenDb();
  EXPECT_EQ(*SchemaVersion(*db, "items"), 0);  // no berth_schema table yet
  ASSERT_TRUE(Migrate(*db, "items", kMigrations));
  const std::array<Migration, 1> other = {{{"create other", "CREATE TABLE other(i INTEGER);"}}};
  ASSERT_TRUE(Migrate(*db, "other", other));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 2);
  EXPECT_EQ(*SchemaVersion(*db, "other"), 1);
  EXPECT_EQ(*db->UserVersion(), 0);
}

TEST_F(SqliteTest, FailedMigrationLeavesLastCompleteVersion) {
  auto db = OpenDb();
  const std::array<Migration, 3> broken = {{
      kMigrations[0],
      {"half broken", "CREATE TABLE extra(i INTEGER); INSERT INTO nowhere VALUES (1);"},
      kMigrations[1],
  }};
  auto migrated = Migrate(*db, "items", broken);
  ASSERT_FALSE(migrated);
  EXPECT_THAT(migrated.error().ToString(), HasSubstr("half broken"));
  EXPECT_THAT(migrated.error().ToString(), HasSubstr("nowhere"));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 1);
  // The failed step's first statement was rolled back with it.
  auto extra = db->Prepare("SELECT * FROM extra");
  EXPECT_FALSE(extra);
}

TEST_F(SqliteTest, NewerSchemaIsRefused) {
  auto db = OpenDb();
  ASSERT_TRUE(Migrate(*db, "items", kMigrations));
  ASSERT_TRUE(db->Execute("UPDATE berth_schema SET version = 5 WHERE component = 'items'"));
  auto migrated = Migrate(*db, "items", kMigrations);
  ASSERT_FALSE(migrated);
  EXPECT_EQ(migrated.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(migrated.error().message(), HasSubstr("schema version 5"));
}

// A database written before berth_schema, when Migrate kept the version in PRAGMA user_version:
// its version is adopted, not re-run from zero.
TEST_F(SqliteTest, LegacyUserVersionIsAdopted) {
  auto db = OpenDb();
  ASSERT_TRUE(
      db->Execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                  "INSERT INTO items(name) VALUES ('old');"
                  "PRAGMA user_version = 1;"));
  ASSERT_TRUE(Migrate(*db, "items", kMigrations, LegacyVersion::kUserVersion));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 2);
  EXPECT_EQ(QueryText(*db, "SELECT name || ':' || size FROM items"), "old:0");

  // Once recorded in berth_schema, user_version no longer matters.
  ASSERT_TRUE(db->Execute("PRAGMA user_version = 0"));
  ASSERT_TRUE(Migrate(*db, "items", kMigrations, LegacyVersion::kUserVersion));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 2);
}

TEST_F(SqliteTest, LegacyUserVersionAtTargetIsRecorded) {
  auto db = OpenDb();
  ASSERT_TRUE(
      db->Execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                  "size INTEGER NOT NULL DEFAULT 0); PRAGMA user_version = 2;"));
  ASSERT_TRUE(Migrate(*db, "items", kMigrations, LegacyVersion::kUserVersion));
  EXPECT_EQ(*SchemaVersion(*db, "items"), 2);
}

TEST_F(SqliteTest, NewerLegacySchemaIsRefused) {
  auto db = OpenDb();
  ASSERT_TRUE(db->Execute("PRAGMA user_version = 5"));
  auto migrated = Migrate(*db, "items", kMigrations, LegacyVersion::kUserVersion);
  ASSERT_FALSE(migrated);
  EXPECT_EQ(migrated.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(migrated.error().message(), HasSubstr("schema version 5"));
}

}  // namespace
}  // namespace berth::sqlite
