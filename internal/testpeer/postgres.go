package testpeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres is a running PostgreSQL server for tests: a cluster of its
// own, made by initdb in a directory the caller gives, with one superuser
// that needs no password (trust authentication) and one empty database.
//
// The server listens on a free port of 127.0.0.1 only; its Unix socket,
// when the path is short enough for one, is in the cluster's directory,
// never in the system's. fsync stays on, as in production, so that a
// test that restarts or kills the server sees what a real one keeps.
//
// PostgreSQL refuses to run as root. When the tests do, initdb and the
// server run through setpriv as an unprivileged user ("postgres", which
// Debian's package creates, or else "nobody"); the cluster's directories
// are given to that user, and the directories above them within the
// system's temporary directory are made searchable by it.
type Postgres struct {
	// Addr is "127.0.0.1:port"; Port is the port.
	Addr string
	Port int
	// User is the superuser the URLs name.
	User string
	// Database is the database URL names, created empty by
	// StartPostgres.
	Database string
	// Dir is the working directory, which holds the log; the cluster is
	// in its subdirectory "data", the Unix socket in "run".
	Dir string

	bin    string     // the directory of initdb and postgres
	runAs  *runAsUser // nil when not root
	socket string     // the socket directory, "" for none
	dbs    atomic.Int64

	mu   sync.Mutex
	proc *Process
}

// runAsUser is the unprivileged account PostgreSQL runs as under root.
type runAsUser struct {
	name     string
	uid, gid int
}

// postgresDB is the name of the database StartPostgres creates.
const postgresDB = "pacsd"

// StartPostgres makes a new cluster in dir with initdb, starts its server
// on a free port of 127.0.0.1, waits until it accepts connections, and
// creates the empty database Database. It looks for the server's programs
// on PATH, then where Debian's postgresql package installs them
// (/usr/lib/postgresql/VERSION/bin, the newest version first).
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	if dir == "" {
		return nil, errors.New("testpeer: postgres: directory is empty")
	}
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	s := &Postgres{User: "postgres", Database: postgresDB, Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		if s.runAs, err = unprivileged(); err != nil {
			return nil, err
		}
		if _, err := Lookup("setpriv"); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	p, err := retryPorts(ctx, func(ports []int) (*Process, error) {
		s.Port = ports[0]
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		return s.launch(ctx)
	}, 1)
	if err != nil {
		return nil, err
	}
	s.proc = p
	if _, err := s.CreateDatabase(ctx, s.Database); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

// StartPostgresT starts PostgreSQL for tb as StartPostgres does, in a new
// tb.TempDir(), skipping or failing tb as Need does if it is not
// installed. Stopping it is registered with tb.Cleanup.
func StartPostgresT(tb testing.TB) *Postgres {
	tb.Helper()
	s, err := StartPostgres(tb.Context(), tb.TempDir())
	check(tb, err)
	tb.Cleanup(func() {
		p := s.Process()
		err := s.Stop()
		if err != nil {
			tb.Error(err)
		}
		if err != nil || tb.Failed() {
			tb.Logf("last lines of %s:\n%s", p.Log(), p.LogTail(40))
		}
	})
	return s
}

// postgresBin returns the directory that holds initdb and postgres.
func postgresBin() (string, error) {
	if p, err := Lookup("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		_, err1 := os.Stat(filepath.Join(d, "initdb"))
		_, err2 := os.Stat(filepath.Join(d, "postgres"))
		if err1 == nil && err2 == nil {
			return d, nil
		}
	}
	return "", notInstalledError("PostgreSQL (initdb and postgres, Debian package postgresql)")
}

// unprivileged returns the account to run PostgreSQL as when the tests
// run as root.
func unprivileged() (*runAsUser, error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &runAsUser{name: name, uid: uid, gid: gid}, nil
	}
	return nil, fmt.Errorf("testpeer: postgres refuses to run as root, and no unprivileged account to run it as was found: %w", errors.Join(errs...))
}

// command returns how to run the program name of the server's with args:
// directly, or through setpriv as the unprivileged account under root.
// setpriv sets the parent-death signal again after it changes user,
// since the kernel clears it then.
func (s *Postgres) command(name string, args ...string) (string, []string) {
	path := filepath.Join(s.bin, name)
	if s.runAs == nil {
		return path, args
	}
	return "setpriv", append([]string{
		"--reuid=" + strconv.Itoa(s.runAs.uid), "--regid=" + strconv.Itoa(s.runAs.gid), "--clear-groups",
		"--pdeathsig", "KILL", "--", path,
	}, args...)
}

// initdb prepares the directories and makes the cluster.
func (s *Postgres) initdb(ctx context.Context) error {
	data := filepath.Join(s.Dir, "data")
	run := filepath.Join(s.Dir, "run")
	for _, d := range []string{data, run} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("testpeer: postgres: %w", err)
		}
		if s.runAs != nil {
			if err := os.Chown(d, s.runAs.uid, s.runAs.gid); err != nil {
				return fmt.Errorf("testpeer: postgres: %w", err)
			}
		}
	}
	if s.runAs != nil {
		if err := searchable(s.Dir); err != nil {
			return err
		}
	}
	// A Unix socket's path is limited to 107 bytes; the socket is left
	// out rather than the start failing when a test's directory is
	// deeper than that allows. Tests connect over TCP anyway.
	if len(filepath.Join(run, ".s.PGSQL.65535.lock")) < 100 {
		s.socket = run
	}
	// The C locale keeps the cluster the same on every machine; the index
	// must not depend on a collation, and its tests do not. initdb's own
	// fsync of the new cluster is left out: a cluster that the machine
	// crashed under is thrown away with its test. The server syncs.
	name, args := s.command("initdb", "--pgdata", data, "--username", s.User, "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-instructions", "--no-sync")
	if _, _, err := Run(ctx, name, args...); err != nil {
		return fmt.Errorf("testpeer: postgres: initdb: %w", err)
	}
	return nil
}

// searchable lets the unprivileged account reach dir: it adds search
// permission for others to dir and to the directories above it, up to
// the system's temporary directory, where tests make their directories.
// Directories outside it are left alone, and must be searchable already.
func searchable(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("testpeer: postgres: %w", err)
	}
	tmp := filepath.Clean(os.TempDir())
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("testpeer: postgres: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if d != tmp && !strings.HasPrefix(d, tmp+string(filepath.Separator)) {
				return fmt.Errorf("testpeer: postgres: %s is not searchable by others, and PostgreSQL must run as another user than root: use a directory under %s", d, tmp)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("testpeer: postgres: %w", err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// launch starts the server on s.Port and waits until it accepts
// connections.
func (s *Postgres) launch(ctx context.Context) (*Process, error) {
	name, args := s.command("postgres",
		"-D", filepath.Join(s.Dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(s.Port),
		"-c", "unix_socket_directories="+s.socket,
		// The conformance suites open a database per test, each with a
		// pool of its own.
		"-c", "max_connections=300",
		"-c", "fsync=on",
	)
	p, err := Start(ctx, Cmd{Name: name, Args: args, Dir: s.Dir})
	if err != nil {
		return nil, err
	}
	return p, s.waitReady(ctx, p)
}

// waitReady polls the server until it accepts a connection, failing early
// if p exits first or ctx ends. A server listens before it accepts
// connections: while it starts or recovers it refuses them.
func (s *Postgres) waitReady(ctx context.Context, p *Process) error {
	var last error
	for {
		c, err := pgconn.Connect(ctx, s.URLFor("postgres"))
		if err == nil {
			return c.Close(ctx)
		}
		last = err
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-p.Exited():
			t.Stop()
			return p.exitError()
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("testpeer: waiting for postgres on %s: %w (last error: %v)", s.Addr, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// URL returns the URL of Database, as pgx and index/postgres take it:
// postgres://USER@HOST:PORT/DATABASE?sslmode=disable.
func (s *Postgres) URL() string { return s.URLFor(s.Database) }

// URLFor returns the URL of the database named db.
func (s *Postgres) URLFor(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(s.User), Host: s.Addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDatabase creates the empty database name and returns its URL.
func (s *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	c, err := pgconn.Connect(ctx, s.URLFor("postgres"))
	if err != nil {
		return "", fmt.Errorf("testpeer: postgres: create database %s: %w", name, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	ident := `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	if _, err := c.Exec(ctx, "CREATE DATABASE "+ident).ReadAll(); err != nil {
		return "", fmt.Errorf("testpeer: postgres: create database %s: %w", name, err)
	}
	return s.URLFor(name), nil
}

// NewDatabaseT creates an empty database of a new name for tb and returns
// its URL, so that tests running in parallel on one server each have a
// database of their own.
func (s *Postgres) NewDatabaseT(tb testing.TB) string {
	tb.Helper()
	u, err := s.CreateDatabase(tb.Context(), "test"+strconv.FormatInt(s.dbs.Add(1), 10))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// Process returns the server's current process, for its log and PID.
func (s *Postgres) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Stop stops the server with a fast shutdown: it disconnects its clients,
// rolls back their transactions and writes a checkpoint. The cluster stays
// in Dir, so Restart can bring the same server back.
func (s *Postgres) Stop() error {
	return stopPostgres(s.Process())
}

// stopPostgres asks the server to shut down fast and waits for it, then
// stops p as Process.Stop does, which ends it if it did not. SIGTERM,
// which Stop sends, asks PostgreSQL for a smart shutdown, one that waits
// for every client to leave.
func stopPostgres(p *Process) error {
	select {
	case <-p.Exited():
	default:
		if err := p.cmd.Process.Signal(syscall.SIGINT); err == nil {
			t := time.NewTimer(stopGrace)
			select {
			case <-p.Exited():
			case <-t.C:
			}
			t.Stop()
		}
	}
	return p.Stop()
}

// Restart stops the server if it is running and starts it again on the
// same port and cluster, so that clients configured for it can carry on;
// it returns once the server accepts connections again. After Kill on
// its Process, the start is a crash recovery. Tests use it to see what a
// client does while its server is down and after it is back.
func (s *Postgres) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := stopPostgres(s.proc); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		p, err := s.launch(ctx)
		if err == nil {
			s.proc = p
			return nil
		}
		if p != nil {
			if serr := p.Stop(); serr != nil && !errors.Is(err, errExited) {
				err = errors.Join(err, serr)
			}
		}
		// The backends of a killed server leave a moment after it: until
		// they have, a new server finds its shared memory still in use
		// and exits at once. Anything else is an error.
		if !errors.Is(err, errExited) || !strings.Contains(err.Error(), "shared memory") || ctx.Err() != nil {
			return fmt.Errorf("testpeer: restarting postgres on %s: %w", s.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
