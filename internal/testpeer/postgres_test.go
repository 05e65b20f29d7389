package testpeer_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// query runs sql on the database at url and returns the first column of
// its rows.
func query(t *testing.T, url, sql string) []string {
	t.Helper()
	c, err := pgconn.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer c.Close(context.Background())
	res, err := c.Exec(t.Context(), sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var out []string
	for _, r := range res {
		for _, row := range r.Rows {
			out = append(out, string(row[0]))
		}
	}
	return out
}

// TestPostgres starts a server, writes to its database, restarts it
// after a clean stop and after a kill, and checks that it listens on
// loopback only, on the same port, with what was committed still there.
func TestPostgres(t *testing.T) {
	pg := testpeer.StartPostgresT(t)
	if !strings.HasPrefix(pg.URL(), "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(pg.URL(), "/pacsd?sslmode=disable") {
		t.Errorf("URL() = %q", pg.URL())
	}
	if got := query(t, pg.URL(), "SHOW listen_addresses"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("listen_addresses = %q", got)
	}
	if got := query(t, pg.URL(), "SHOW fsync"); len(got) != 1 || got[0] != "on" {
		t.Errorf("fsync = %q", got)
	}
	query(t, pg.URL(), "CREATE TABLE t (v INT); INSERT INTO t VALUES (1)")

	other := pg.NewDatabaseT(t)
	if other == pg.URL() {
		t.Fatalf("NewDatabaseT returned the main database")
	}
	if got := query(t, other, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 't'"); got[0] != "0" {
		t.Errorf("a new database holds the table of another")
	}

	addr := pg.Addr
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	query(t, pg.URL(), "INSERT INTO t VALUES (2)")
	if err := pg.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if pg.Addr != addr {
		t.Errorf("Restart moved the server from %s to %s", addr, pg.Addr)
	}
	if got := query(t, pg.URL(), "SELECT v FROM t ORDER BY v"); strings.Join(got, ",") != "1,2" {
		t.Errorf("after restarts, t holds %q, want 1,2", got)
	}
}
