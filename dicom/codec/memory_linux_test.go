package codec

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// memoryChild names the environment variable that makes
// TestTranscodeMemory the measuring child process rather than its parent.
const memoryChild = "PACSD_CODEC_MEMORY_CHILD"

// memoryObject is the size of the multi-frame object of the memory test.
const memoryObject = 2 << 30

// TestTranscodeMemory transcodes a 2 GiB multi-frame object, generated
// as it is read, from Explicit VR Little Endian to RLE Lossless and that
// straight back to Explicit VR Little Endian, every frame encoded and
// decoded, in a process of its own, and checks that the process's
// resident memory grew by no more than 256 MiB at its peak.
func TestTranscodeMemory(t *testing.T) {
	if os.Getenv(memoryChild) != "" {
		transcodeMemoryChild(t)
		return
	}
	// The race detector multiplies both the time and the memory of
	// what is measured: the child is this package's tests built without
	// it, as production code runs.
	bin := os.Args[0]
	if raceEnabled {
		bin = filepath.Join(t.TempDir(), "codec.test")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "github.com/pacsd/pacsd/dicom/codec").CombinedOutput(); err != nil {
			t.Fatalf("go test -c: %v\n%s", err, out)
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^TestTranscodeMemory$", "-test.v")
	cmd.Env = append(os.Environ(), memoryChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var growth, native, frames int64
	var took time.Duration
	found := false
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "memory:"); i >= 0 {
			if _, err := fmt.Sscanf(line[i:], "memory: rss_growth=%d native=%d frames=%d took=%s", &growth, &native, &frames, new(string)); err == nil {
				found = true
			}
			took, _ = time.ParseDuration(line[strings.LastIndex(line, "=")+1:])
		}
	}
	if !found {
		t.Fatalf("the child did not report:\n%s", out)
	}
	t.Logf("%d MiB of native pixels in %d frames encoded and decoded in %v: resident memory grew by %d MiB at its peak", native>>20, frames, took, growth>>20)
	if native < memoryObject {
		t.Errorf("only %d MiB transcoded", native>>20)
	}
	if growth > 256<<20 {
		t.Errorf("resident memory grew by %d MiB, more than 256 MiB", growth>>20)
	}
}

// transcodeMemoryChild does the transcoding and reports what it measured.
func transcodeMemoryChild(t *testing.T) {
	in := dcmgen.Instance{Rows: 1024, Columns: 1024, BitsAllocated: 16, NumberOfFrames: memoryObject / (1024 * 1024 * 2)}
	// The object, File Meta Information first, as the archive reads it.
	gr, gw := io.Pipe()
	go func() { _, err := dcmgen.WriteFile(gw, &in); gw.CloseWithError(err) }()
	br := bufio.NewReaderSize(gr, 64<<10)
	if _, _, err := dicom.ReadFileMeta(br); err != nil {
		t.Fatal(err)
	}
	before := procStatus(t, "VmRSS")
	start := time.Now()
	reg := New(Options{})
	ctx := context.Background()

	// Explicit VR Little Endian to RLE, and RLE back, each in its own
	// goroutine as a C-GET and a WADO-RS request would.
	rr, rw := io.Pipe()
	encoded := make(chan error, 1)
	go func() {
		_, err := reg.Transcode(ctx, rw, br, uid.ExplicitVRLittleEndian, uid.RLELossless, TranscodeOptions{})
		rw.CloseWithError(err)
		encoded <- err
	}()
	var n countingWriter
	res, err := reg.Transcode(ctx, &n, rr, uid.RLELossless, uid.ExplicitVRLittleEndian, TranscodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-encoded; err != nil {
		t.Fatal(err)
	}
	peak := procStatus(t, "VmHWM")
	fmt.Printf("memory: rss_growth=%d native=%d frames=%d took=%s\n", peak-before, int64(res.Frames)*int64(in.Rows*in.Columns*2), res.Frames, time.Since(start).Round(time.Millisecond))
}

// procStatus returns a size, in bytes, from /proc/self/status.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
