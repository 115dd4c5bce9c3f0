package migrate

import (
	"testing"
	"testing/fstest"
)

func TestFindDestructive(t *testing.T) {
	for _, tc := range []struct {
		sql    string
		reason string // "" means not destructive
		line   int
	}{
		{"CREATE TABLE a (id int);", "", 0},
		{"DROP TABLE a;", "DROP TABLE", 1},
		{"\n\ndrop table if exists a cascade;", "DROP TABLE", 3},
		{"DROP SCHEMA app CASCADE", "DROP SCHEMA", 1},
		{"TRUNCATE error_log", "TRUNCATE", 1},
		{"truncate table a, b restart identity", "TRUNCATE", 1},
		{"DELETE FROM a", "DELETE FROM without WHERE", 1},
		{"DELETE FROM a WHERE id < 10", "", 0},
		{"DELETE FROM a USING b WHERE a.id = b.id", "", 0},
		{"DELETE FROM a RETURNING (SELECT 1 FROM b WHERE true)", "DELETE FROM without WHERE", 1},
		{"WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d WHERE true", "DELETE FROM without WHERE", 1},
		{"WITH d AS (DELETE FROM a WHERE x RETURNING *) SELECT 1", "", 0},
		{"ALTER TABLE a DROP COLUMN b", "ALTER TABLE ... DROP COLUMN", 1},
		{"ALTER TABLE a DROP b", "ALTER TABLE ... DROP COLUMN", 1},
		{"ALTER TABLE IF EXISTS ONLY a DROP IF EXISTS b", "ALTER TABLE ... DROP COLUMN", 1},
		{"ALTER TABLE a ADD COLUMN c int, DROP COLUMN b", "ALTER TABLE ... DROP COLUMN", 1},
		{"ALTER TABLE a DROP CONSTRAINT a_fk", "", 0},
		{"ALTER TABLE a ALTER COLUMN b DROP DEFAULT, ALTER COLUMN c DROP NOT NULL", "", 0},
		{"ALTER TABLE a ALTER COLUMN b DROP IDENTITY IF EXISTS", "", 0},
		{"DROP INDEX a_idx", "", 0},
		{"DROP VIEW v", "", 0},
		{"DROP TYPE mood CASCADE", "DROP TYPE ... CASCADE", 1},
		{"DROP OWNED BY someone", "DROP OWNED", 1},
		{"-- DROP TABLE a\nCREATE TABLE b ()", "", 0},
		{"/* DROP TABLE a; /* nested */ TRUNCATE b */ SELECT 1", "", 0},
		{"INSERT INTO notes VALUES ('DROP TABLE a; it''s fine')", "", 0},
		{"INSERT INTO notes VALUES (E'\\' DROP TABLE a')", "", 0},
		{`CREATE TABLE "drop table" (id int)`, "", 0},
		{"ALTER TABLE a ADD CONSTRAINT fk FOREIGN KEY (b) REFERENCES c ON DELETE CASCADE", "", 0},
		{"GRANT SELECT, DELETE, TRUNCATE ON a TO reader", "", 0},
		{"CREATE TRIGGER t BEFORE TRUNCATE OR DELETE ON a FOR EACH STATEMENT EXECUTE FUNCTION f()", "", 0},
		{"DO $$\nBEGIN\n  TRUNCATE a;\nEND\n$$;", "TRUNCATE", 3},
		{"DO $body$ BEGIN IF true THEN DROP TABLE a; END IF; END $body$", "DROP TABLE", 1},
		{"SELECT $1::int; CREATE TABLE x ()", "", 0},
		{"CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n\nDROP TABLE a;", "DROP TABLE", 4},
	} {
		f, ok := findDestructive(tc.sql)
		if tc.reason == "" {
			if ok {
				t.Errorf("%q: flagged %q at line %d, want not destructive", tc.sql, f.reason, f.line)
			}
			continue
		}
		if !ok || f.reason != tc.reason || f.line != tc.line {
			t.Errorf("%q: got (%q, line %d, %v), want (%q, line %d)", tc.sql, f.reason, f.line, ok, tc.reason, tc.line)
		}
	}
}

func TestEmbeddedMigrationsAreNotDestructive(t *testing.T) {
	sources, err := load(sqlFS())
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) == 0 || sources[0].version != 1 || sources[0].name != "error_log" {
		t.Fatalf("embedded migrations = %+v", sources)
	}
	for _, s := range sources {
		if f, bad := findDestructive(s.sql); bad {
			t.Errorf("%s line %d: %s", s.file, f.line, f.reason)
		}
	}
}

func TestLoad(t *testing.T) {
	good := fstest.MapFS{
		"0002_b.sql": {Data: []byte("SELECT 2")},
		"0001_a.sql": {Data: []byte("SELECT 1")},
		"10_c.sql":   {Data: []byte("SELECT 10")},
		"README.md":  {Data: []byte("not a migration")},
	}
	sources, err := load(good)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, s := range sources {
		got = append(got, s.version)
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 10 {
		t.Errorf("versions = %v, want [1 2 10]", got)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":     {"create-table.sql": {}},
		"upper case":   {"0001_Create.sql": {}},
		"zero version": {"0000_a.sql": {}},
		"duplicate":    {"0001_a.sql": {}, "1_b.sql": {}},
	} {
		if _, err := load(fsys); err == nil {
			t.Errorf("%s: load accepted %v", name, fsys)
		}
	}
}
