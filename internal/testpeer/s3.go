package testpeer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// S3Server is a running S3-compatible server for tests: MinIO, or Versity's
// S3 gateway on its POSIX backend. Two independent implementations keep
// pacsd's S3 backend from depending on the quirks of one.
//
// The server listens on a free port of 127.0.0.1, speaks plain HTTP, keeps
// its objects in a directory of its own and accepts one root account with
// random credentials.
type S3Server struct {
	// Name is the program that serves: "minio" or "versitygw".
	Name string
	// Endpoint is "127.0.0.1:port", as minio-go and pacsd's s3:// URLs
	// take it.
	Endpoint string
	// URL is "http://" + Endpoint.
	URL string
	// AccessKey and SecretKey are the root account's credentials.
	AccessKey, SecretKey string
	// Region is the region the server reports for its buckets.
	Region string
	// Dir is the working directory, which holds the log; the objects
	// live in its subdirectory "data".
	Dir string

	// launch starts the program on Endpoint and waits until it serves.
	launch func(ctx context.Context) (*Process, error)

	mu   sync.Mutex
	proc *Process
}

// s3Region is the region both servers report by default.
const s3Region = "us-east-1"

// newS3Server prepares an S3Server in dir with fresh credentials.
func newS3Server(name, dir string) (*S3Server, error) {
	if dir == "" {
		return nil, fmt.Errorf("testpeer: %s: directory is empty", name)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("testpeer: %w", err)
	}
	// Random credentials keep one test's server from accepting another
	// test's client by accident.
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("testpeer: %w", err)
	}
	return &S3Server{
		Name:      name,
		AccessKey: "pacsd-test",
		SecretKey: hex.EncodeToString(b[:]),
		Region:    s3Region,
		Dir:       dir,
	}, nil
}

// listen sets the port the server is to listen on.
func (s *S3Server) listen(port int) {
	s.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = "http://" + s.Endpoint
}

// start starts s for the first time on fresh ports; launch is called
// with the ports and must set s.launch before starting anything.
func (s *S3Server) start(ctx context.Context, nports int, launch func(ports []int) (*Process, error)) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := retryPorts(ctx, launch, nports)
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

// StartMinIO starts MinIO in dir and waits until its cluster health
// endpoint (/minio/health/cluster) answers 200: the liveness endpoint
// answers some milliseconds before the object layer is up, and requests in
// that window fail with "Server not initialized yet". MinIO is built with `go install`, so it is
// looked up with Lookup, which searches there.
//
// The server runs in single-drive mode on dir/data. Its web console is
// switched off and bound to loopback all the same, so that no MinIO
// version opens a port on every interface; MINIO_UPDATE=off keeps it from
// looking for updates on the network, and MINIO_CI_CD caps the memory it
// reserves for buffers, as it does in MinIO's own CI.
func StartMinIO(ctx context.Context, dir string) (*S3Server, error) {
	path, err := Lookup("minio")
	if err != nil {
		return nil, err
	}
	s, err := newS3Server("minio", dir)
	if err != nil {
		return nil, err
	}
	err = s.start(ctx, 2, func(ports []int) (*Process, error) {
		s.listen(ports[0])
		console := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		s.launch = func(ctx context.Context) (*Process, error) {
			p, err := Start(ctx, Cmd{
				Name: path,
				Args: []string{"server", "--address", s.Endpoint, "--console-address", console, filepath.Join(dir, "data")},
				Dir:  dir,
				Env: []string{
					"MINIO_ROOT_USER=" + s.AccessKey,
					"MINIO_ROOT_PASSWORD=" + s.SecretKey,
					"MINIO_BROWSER=off",
					"MINIO_UPDATE=off",
					"MINIO_CI_CD=1",
				},
			})
			if err != nil {
				return nil, err
			}
			return p, waitHTTP(ctx, p, s.URL+"/minio/health/cluster")
		}
		return s.launch(ctx)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// StartMinIOT starts MinIO for tb as StartMinIO does, in a new
// tb.TempDir(), skipping or failing tb as Need does if it is not
// installed. Stopping it is registered with tb.Cleanup.
func StartMinIOT(tb testing.TB) *S3Server {
	tb.Helper()
	s, err := StartMinIO(tb.Context(), tb.TempDir())
	check(tb, err)
	s.cleanup(tb)
	return s
}

// versityHealth is the path of the health endpoint StartVersity enables.
const versityHealth = "/health"

// StartVersity starts Versity's S3 gateway (versitygw) with its POSIX
// backend on dir/data and waits until its health endpoint answers. It is
// built with `go install`, so it is looked up with Lookup, which searches there.
//
// The gateway stores each object as a file named by its key and its
// metadata in extended attributes, so dir must be on a filesystem that
// supports them (ext4, xfs, btrfs and tmpfs do). Keep-alive is switched
// on: without it the gateway closes every connection after one request,
// which measures TCP handshakes rather than storage.
func StartVersity(ctx context.Context, dir string) (*S3Server, error) {
	path, err := Lookup("versitygw")
	if err != nil {
		return nil, err
	}
	s, err := newS3Server("versitygw", dir)
	if err != nil {
		return nil, err
	}
	err = s.start(ctx, 1, func(ports []int) (*Process, error) {
		s.listen(ports[0])
		s.launch = func(ctx context.Context) (*Process, error) {
			p, err := Start(ctx, Cmd{
				Name: path,
				Args: []string{"--port", s.Endpoint, "--health", versityHealth, "--keep-alive", "posix", filepath.Join(dir, "data")},
				Dir:  dir,
				Env: []string{
					"ROOT_ACCESS_KEY=" + s.AccessKey,
					"ROOT_SECRET_KEY=" + s.SecretKey,
					"VGW_REGION=" + s.Region,
				},
			})
			if err != nil {
				return nil, err
			}
			return p, waitHTTP(ctx, p, s.URL+versityHealth)
		}
		return s.launch(ctx)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// StartVersityT starts Versity's gateway for tb as StartVersity does, in a
// new tb.TempDir(), skipping or failing tb as Need does if it is not
// installed. Stopping it is registered with tb.Cleanup.
func StartVersityT(tb testing.TB) *S3Server {
	tb.Helper()
	s, err := StartVersity(tb.Context(), tb.TempDir())
	check(tb, err)
	s.cleanup(tb)
	return s
}

// cleanup registers Stop with tb.Cleanup and, like the other peers'
// cleanup, prints the end of the log if the test failed or the server
// died on its own. It looks the process up when the test ends, since
// Restart replaces it.
func (s *S3Server) cleanup(tb testing.TB) {
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
}

// Process returns the server's current process, for its log and PID.
func (s *S3Server) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Stop stops the server; see Process.Stop. The objects stay in Dir, so
// Restart can bring the same server back.
func (s *S3Server) Stop() error {
	return s.Process().Stop()
}

// Restart stops the server if it is running and starts it again on the
// same port, directory and credentials, so that clients configured for it
// can carry on; it returns once the server serves again. Tests use it to
// see what a client does while its server is down and after it is back.
func (s *S3Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.proc.Stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := s.launch(ctx)
	if err != nil {
		if p != nil {
			err = errors.Join(err, p.Stop())
		}
		return fmt.Errorf("testpeer: restarting %s on %s: %w", s.Name, s.Endpoint, err)
	}
	s.proc = p
	return nil
}

// waitHTTP polls url until it answers 200 OK, failing early if p exits
// first (typically because another program took its port) or ctx ends.
func waitHTTP(ctx context.Context, p *Process, url string) error {
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("testpeer: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-p.Exited():
			t.Stop()
			return p.exitError()
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("testpeer: waiting for %s: %w (last error: %v)", url, ctx.Err(), last)
		case <-t.C:
		}
	}
}
