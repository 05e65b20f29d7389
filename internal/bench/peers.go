package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// peer is one archive under test and how to start a fresh copy of it in an
// empty directory, so that every run stores into an empty archive.
type peer struct {
	name string
	// acks says what the peer has done with an instance when it sends the
	// success response; the report prints it, because a peer that answers
	// before the data reaches the disk is doing less work than one that
	// answers after an fsync.
	acks string
	// start starts the peer in dir. dests are the remote AEs it may
	// C-MOVE to; storescp, which has no query/retrieve service, ignores
	// them.
	start func(ctx context.Context, dir string, dests ...testpeer.Modality) (*server, error)
	// run, for a yardstick that is not a DICOM peer, stores the files of
	// the directory corpus itself, in place of start and storescu.
	run func(ctx context.Context, corpus string) (sendResult, error)
}

// server is a running peer.
type server struct {
	aet  string
	host string
	port int
	pid  int
	// web is the root of the peer's DICOMweb services
	// ("http://127.0.0.1:port/dicom-web"), empty if it serves none.
	web string
	// objects is the directory of pacsd's filesystem store, whose files
	// are the stored objects, for reading them straight from the disk;
	// empty for the other peers.
	objects string
	// stored counts the instances the peer holds, to show that a run
	// stored what it was given rather than failed fast.
	stored func(ctx context.Context) (int, error)
	stop   func() error
	log    string
}

// addr is where s listens for DIMSE, for pacsd's own SCU.
func (s *server) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// startTimeout bounds how long a peer may take to listen; testpeer uses
// the same bound for storescp and Orthanc.
const startTimeout = time.Minute

// pacsdPeer runs the pacsd binary at bin on its embedded defaults: the
// filesystem store and the SQLite index under a fresh --data directory.
func pacsdPeer(bin string) peer {
	return peer{
		name: "pacsd",
		acks: "after fsync of the object file and of its directory, and the commit of its index row (SQLite WAL, synchronous=FULL: an fsync of the WAL)",
		start: func(ctx context.Context, dir string, dests ...testpeer.Modality) (*server, error) {
			return startPacsd(ctx, bin, dir, dests)
		},
	}
}

// startPacsd starts pacsd with its data under dir on two free ports of
// 127.0.0.1, with dests as its remote AEs (--remote-ae), and waits until
// its DIMSE and HTTP ports listen. As testpeer does for the other peers, it retries
// with new ports if pacsd exits first, which is what happens when another
// program took a port in the meantime.
func startPacsd(ctx context.Context, bin, dir string, dests []testpeer.Modality) (*server, error) {
	return startPacsdWith(ctx, bin, dir, dests, nil, nil)
}

// startPacsdWith starts pacsd as startPacsd does, with more flags and
// environment variables.
func startPacsdWith(ctx context.Context, bin, dir string, dests []testpeer.Modality, flags, env []string) (*server, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	data := filepath.Join(dir, "data")
	for attempt := 1; ; attempt++ {
		dport, err := testpeer.FreePort()
		if err != nil {
			return nil, err
		}
		hport, err := testpeer.FreePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dport))
		haddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(hport))
		args := []string{"serve", "--data", data,
			"--dimse-addr", addr,
			"--http-addr", haddr}
		if !slices.Contains(flags, "--log-level") {
			args = append(args, "--log-level", "warn")
		}
		for _, d := range dests {
			args = append(args, "--remote-ae", d.AET+"="+net.JoinHostPort(d.Host, strconv.Itoa(d.Port)))
		}
		args = append(args, flags...)
		p, err := testpeer.Start(ctx, testpeer.Cmd{Name: bin, Args: args, Dir: dir, Env: env})
		if err != nil {
			return nil, err
		}
		if err = p.WaitTCP(ctx, addr); err == nil {
			err = p.WaitTCP(ctx, haddr)
		}
		if err == nil {
			return &server{
				aet:     "PACSD",
				host:    "127.0.0.1",
				port:    dport,
				pid:     p.PID(),
				web:     "http://" + haddr + "/dicom-web",
				objects: filepath.Join(data, "objects"),
				stored: func(context.Context) (int, error) {
					return countObjects(filepath.Join(data, "objects"))
				},
				stop: p.Stop,
				log:  p.Log(),
			}, nil
		}
		_ = p.Stop()
		if attempt == 3 || ctx.Err() != nil {
			return nil, err
		}
	}
}

// countObjects counts the objects of pacsd's filesystem store: regular
// files, less the temporary files of unfinished writes, whose names start
// with ".put~".
func countObjects(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".put~") {
			n++
		}
		return nil
	})
	return n, err
}

// storescpPeer runs dcmtk's storescp as testpeer configures it: every
// transfer syntax accepted (+xa), one file per instance.
func storescpPeer() peer {
	return peer{
		name: "storescp",
		// dcmtk 3.6.7's storescp has no option to fsync. Its
		// --exec-on-reception command runs only after the response has
		// been sent, so it cannot make one durable either; the fair
		// statement is that storescp does less work than pacsd here.
		acks: "after writing the file into the page cache; storescp never calls fsync (dcmtk 3.6.7 has no option for it)",
		start: func(ctx context.Context, dir string, _ ...testpeer.Modality) (*server, error) {
			s, err := testpeer.StartStoreSCP(ctx, testpeer.StoreSCPOptions{Dir: dir})
			if err != nil {
				return nil, err
			}
			return &server{
				aet:  s.AET,
				host: "127.0.0.1",
				port: s.Port,
				pid:  s.Process().PID(),
				stored: func(context.Context) (int, error) {
					files, err := s.Files()
					return len(files), err
				},
				stop: s.Stop,
				log:  s.Process().Log(),
			}, nil
		},
	}
}

// orthancPeer runs Orthanc with testpeer's configuration: the default
// filesystem storage area and SQLite index. testpeer turns SyncStorageArea
// off; sync sets it to true, as the Debian package's orthanc.json ships
// it, so that the report also has an Orthanc that fsyncs its files as
// pacsd does. Either way Orthanc 1.10.1 commits its SQLite index without
// an fsync (strace shows no fsync or fdatasync of the index), so a crash
// can lose index rows of acknowledged instances. With web, Orthanc loads
// the DICOMweb plugin of the Debian package orthanc-dicomweb and serves
// DICOMweb under /dicom-web.
func orthancPeer(sync, web bool) peer {
	p := peer{
		name: "orthanc",
		acks: "after writing the file without fsync (SyncStorageArea=false, as testpeer configures it) and committing its SQLite index without fsync",
	}
	var config map[string]any
	if sync {
		p.name = "orthanc-sync"
		p.acks = "after writing the file and fdatasync of it, but not of its directory (SyncStorageArea=true, the Debian package's setting), and committing its SQLite index without fsync"
		config = map[string]any{"SyncStorageArea": true}
	}
	p.start = func(ctx context.Context, dir string, dests ...testpeer.Modality) (*server, error) {
		// Orthanc finds a C-MOVE destination among its DicomModalities
		// by AE title; the names only serve its REST API.
		modalities := map[string]testpeer.Modality{}
		for _, d := range dests {
			modalities[strings.ToLower(d.AET)] = d
		}
		o, err := testpeer.StartOrthanc(ctx, testpeer.OrthancOptions{Dir: dir, Config: config, Modalities: modalities, DICOMweb: web})
		if err != nil {
			return nil, err
		}
		return &server{
			aet:  o.AET,
			host: "127.0.0.1",
			port: o.DICOMPort,
			pid:  o.Process().PID(),
			web:  strings.TrimSuffix(o.DICOMwebURL, "/"),
			stored: func(ctx context.Context) (int, error) {
				var stats struct{ CountInstances int }
				err := o.GetJSON(ctx, "/statistics", &stats)
				return stats.CountInstances, err
			},
			stop: o.Stop,
			log:  o.Process().Log(),
		}, nil
	}
	return p
}

// storescuArgs are the options storescu gets for every peer, before the
// called AE title, the address and the files: only the presentation
// contexts the files need (-R), and no halt on a failed store (-nh), so
// that a failure shows as a missing instance in the count rather than as
// a suspiciously short run.
var storescuArgs = []string{"-aet", "BENCH", "-R", "-nh"}

// sendResult is what one storescu run cost.
type sendResult struct {
	wall     time.Duration // of the storescu process, start to exit
	cpu      time.Duration // storescu's user and system time
	peerCPU  time.Duration // the peer's user and system time meanwhile
	peerRead bool          // whether peerCPU could be read
}

// send runs storescu against s with paths (files, or directories, which
// scan adds +sd for), one association for all of them, and measures it.
// storescu runs with TCP_NODELAY=1, like every dcmtk process of testpeer:
// without it dcmtk leaves Nagle's algorithm on and each small PDU after a
// large one waits for a delayed ACK.
func send(ctx context.Context, s *server, scan bool, paths ...string) (sendResult, error) {
	var extra []string
	if scan {
		extra = []string{"+sd"}
	}
	return sendWith(ctx, s, extra, paths...)
}

// sendWith runs storescu as send does, with extra options (+sd, TLS)
// before the address.
func sendWith(ctx context.Context, s *server, extra []string, paths ...string) (sendResult, error) {
	bin, err := testpeer.Lookup("storescu")
	if err != nil {
		return sendResult{}, err
	}
	args := append([]string(nil), storescuArgs...)
	args = append(args, "-aec", s.aet)
	args = append(args, extra...)
	args = append(args, s.host, strconv.Itoa(s.port))
	args = append(args, paths...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second

	cpu0, err0 := procCPU(s.pid)
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	cpu1, err1 := procCPU(s.pid)
	if err != nil {
		return sendResult{}, fmt.Errorf("storescu %s: %w\n%s", strings.Join(args, " "), err, lastLines(out.String(), 15))
	}
	r := sendResult{
		wall:     wall,
		cpu:      cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		peerCPU:  cpu1 - cpu0,
		peerRead: err0 == nil && err1 == nil,
	}
	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// userHZ is the unit of the times in /proc/PID/stat. The kernel reports
// them in USER_HZ, which is 100 on every architecture Linux runs Go on.
const userHZ = 100

// procCPU returns the user plus system time that process pid (all its
// threads) has used so far, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may contain spaces; the fields
	// after it are "state ppid … utime stime …", utime being field 14 of
	// the whole line.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// procMemory returns the current resident set (VmRSS) and its peak since
// the process started (VmHWM) of process pid, in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		// "VmRSS:	   12345 kB"
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: /proc status %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("bench: no VmRSS or VmHWM in /proc status")
	}
	return rss, hwm, nil
}
