package index

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Doe^Jane", "DOE^JANE"},
		{"doe^jane^^^", "DOE^JANE"},
		{" Doe ^ Jane ", "DOE^JANE"},
		{"Müller^Jürgen", "MÜLLER^JÜRGEN"},
		{"Yamada^Tarou=山田^太郎=やまだ^たろう", "YAMADA^TAROU=山田^太郎=やまだ^たろう"},
		{"Hong^Gildong==홍^길동", "HONG^GILDONG==홍^길동"},
		{"Doe^John==", "DOE^JOHN"},
		{"=山田^太郎", "=山田^太郎"},
		{`Doe^Jane\roe^richard^^`, `DOE^JANE\ROE^RICHARD`},
		// Simple case mapping: ß has no upper-case letter of its own.
		{"Straße", "STRAßE"},
		{"doe*^j?n", "DOE*^J?N"},
	}
	for _, tt := range tests {
		if got := normalizeName(tt.in); got != tt.want {
			t.Errorf("normalizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBind(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	if got := SQLite.bind(q); got != q {
		t.Errorf("SQLite.bind = %q", got)
	}
	if got, want := PostgreSQL.bind(q), "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"; got != want {
		t.Errorf("PostgreSQL.bind = %q, want %q", got, want)
	}
}

func TestMigrationFiles(t *testing.T) {
	for _, d := range []Dialect{SQLite, PostgreSQL} {
		ms, err := migrations(migrationFS, d)
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		if len(ms) == 0 || ms[0].version != 1 || !strings.Contains(ms[0].name, d.String()) {
			t.Errorf("%v: migrations %+v", d, ms)
		}
	}

	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	fsys := fstest.MapFS{
		"migrations/0001_init.sqlite.sql":   file("sqlite 1"),
		"migrations/0001_init.postgres.sql": file("postgres 1"),
		"migrations/0002_more.sql":          file("shared 2"),
		"migrations/0003_x.postgres.sql":    file("postgres 3"),
		"migrations/0003_x.sqlite.sql":      file("sqlite 3"),
	}
	ms, err := migrations(fsys, PostgreSQL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.sql)
	}
	if strings.Join(got, ",") != "postgres 1,shared 2,postgres 3" {
		t.Errorf("PostgreSQL migrations %q", got)
	}

	for name, bad := range map[string]fstest.MapFS{
		"gap":              {"migrations/0001_a.sql": file(""), "migrations/0003_c.sql": file("")},
		"other dialect":    {"migrations/0001_a.sql": file(""), "migrations/0002_b.postgres.sql": file("")},
		"duplicate":        {"migrations/0001_a.sql": file(""), "migrations/0001_b.sql": file("")},
		"unnumbered":       {"migrations/init.sql": file("")},
		"short number":     {"migrations/1_init.sql": file("")},
		"no description":   {"migrations/0001.sql": file("")},
		"dialect twice":    {"migrations/0001_a.sqlite.sql": file(""), "migrations/0001_b.sqlite.sql": file("")},
		"version zero":     {"migrations/0000_a.sql": file("")},
		"not a number":     {"migrations/00x1_a.sql": file("")},
		"starts at two":    {"migrations/0002_a.sql": file("")},
		"only other kinds": {"migrations/0001_a.postgres.sql": file("")},
	} {
		if ms, err := migrations(bad, SQLite); err == nil {
			t.Errorf("%s: migrations = %+v, want an error", name, ms)
		}
	}
}
