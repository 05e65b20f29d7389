package testpeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long a peer may take to listen, whatever the
// caller's context says: a peer that is not up after a minute is broken,
// and waiting longer only hides that.
const startTimeout = time.Minute

// Modality is a remote DICOM application entity, as Orthanc's
// DicomModalities configuration lists them.
type Modality struct {
	AET  string
	Host string
	Port int
}

// StoreSCPOptions configures StartStoreSCP.
type StoreSCPOptions struct {
	// AET is storescp's AE title; default "STORESCP". storescp does not
	// check the called AE title, so this matters only to what it reports.
	AET string
	// Dir is the working directory, where the log goes; received files
	// go to its subdirectory "received". Required by StartStoreSCP;
	// StartStoreSCPT uses a new tb.TempDir() when empty.
	Dir string
	// Args are added after the default options and so override them,
	// e.g. "+B" to write files exactly as received (bit-preserving),
	// "-pm" to accept unknown SOP classes, "-pdu", "131072" for larger
	// PDUs, "+xi" to accept only Implicit VR Little Endian.
	Args []string
}

// StoreSCP is a running dcmtk storescp.
type StoreSCP struct {
	AET  string
	Addr string // "127.0.0.1:port"
	Port int
	// Dir receives one file per instance, named by storescp as
	// "<modality>.<SOP Instance UID>.dcm".
	Dir  string
	proc *Process
}

// StartStoreSCP starts dcmtk's storescp on a free port of 127.0.0.1 and
// waits until it listens.
//
// It accepts every transfer syntax dcmtk supports (+xa) and writes each
// received instance to its own file named after the SOP Instance UID (-uf,
// the default, with -fe .dcm), so Files can find it; an instance received
// twice overwrites its file.
func StartStoreSCP(ctx context.Context, opts StoreSCPOptions) (*StoreSCP, error) {
	if opts.Dir == "" {
		return nil, errors.New("testpeer: StoreSCPOptions.Dir is empty")
	}
	if opts.AET == "" {
		opts.AET = "STORESCP"
	}
	s := &StoreSCP{AET: opts.AET, Dir: filepath.Join(opts.Dir, "received")}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("testpeer: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := retryPorts(ctx, func(ports []int) (*Process, error) {
		s.Port = ports[0]
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		// -v logs a line per association and file, enough to debug a
		// failure without flooding the log; -dhl skips the reverse DNS
		// lookup of every caller.
		args := []string{"-v", "-dhl", "-aet", opts.AET, "+xa", "-od", s.Dir, "-uf", "-fe", ".dcm"}
		args = append(append(args, opts.Args...), strconv.Itoa(s.Port))
		p, err := Start(ctx, Cmd{Name: "storescp", Args: args, Dir: opts.Dir})
		if err != nil {
			return nil, err
		}
		return p, p.WaitTCP(ctx, s.Addr)
	}, 1)
	if err != nil {
		return nil, err
	}
	s.proc = p
	return s, nil
}

// retryPorts calls start with n fresh free ports and, if the process it
// started exits before it is ready, stops it and tries again with new
// ports: the usual cause is another program that took a port between
// FreePort and the peer's bind.
func retryPorts(ctx context.Context, start func(ports []int) (*Process, error), n int) (*Process, error) {
	for attempt := 1; ; attempt++ {
		ports := make([]int, n)
		for i := range ports {
			port, err := FreePort()
			if err != nil {
				return nil, err
			}
			ports[i] = port
		}
		p, err := start(ports)
		if err == nil {
			return p, nil
		}
		if p != nil {
			if serr := p.Stop(); serr != nil && !errors.Is(err, errExited) {
				err = errors.Join(err, serr)
			}
		}
		if !errors.Is(err, errExited) || attempt == 3 {
			return nil, err
		}
	}
}

// StartStoreSCPT starts storescp for tb as StartStoreSCP does, skipping or
// failing tb as Need does if storescp is not installed. Stop is registered
// with tb.Cleanup.
func StartStoreSCPT(tb testing.TB, opts StoreSCPOptions) *StoreSCP {
	tb.Helper()
	Need(tb, "storescp")
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	s, err := StartStoreSCP(tb.Context(), opts)
	check(tb, err)
	cleanup(tb, s.proc)
	return s
}

// Modality returns s as a remote modality, for Orthanc's DicomModalities
// or a pacsd configuration.
func (s *StoreSCP) Modality() Modality {
	return Modality{AET: s.AET, Host: "127.0.0.1", Port: s.Port}
}

// Process returns the storescp process, for its log.
func (s *StoreSCP) Process() *Process { return s.proc }

// Stop stops storescp; see Process.Stop.
func (s *StoreSCP) Stop() error { return s.proc.Stop() }

// Files returns the paths of the received instances keyed by SOP Instance
// UID. storescp answers a C-STORE only after it has written the file, so a
// store that the sender saw succeed is already here.
func (s *StoreSCP) Files() (map[string]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("testpeer: %w", err)
	}
	files := make(map[string]string, len(entries))
	for _, e := range entries {
		if uid, ok := receivedUID(e.Name()); ok && e.Type().IsRegular() {
			files[uid] = filepath.Join(s.Dir, e.Name())
		}
	}
	return files, nil
}

// receivedUID takes the SOP Instance UID out of a storescp file name
// "<modality>.<UID>.dcm". The modality prefix is letters ("CT", "RP",
// "TLE") and a UID starts with a digit, so the UID begins after the first
// dot that is followed by a digit.
func receivedUID(name string) (string, bool) {
	base, ok := strings.CutSuffix(name, ".dcm")
	if !ok {
		return "", false
	}
	for i := 0; i+1 < len(base); i++ {
		if base[i] == '.' && base[i+1] >= '0' && base[i+1] <= '9' {
			return base[i+1:], true
		}
	}
	return "", false
}
