package dicomweb_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicomweb"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/storage"
)

// These tests reproduce, on loopback, what a hostile-input review of the
// HTTP side found, and check each is bounded now.

// TestIncludefieldBounded checks that a search naming 100,000 private
// tags is refused with the reason instead of returning every one of them
// empty in every match.
func TestIncludefieldBounded(t *testing.T) {
	f := newFixture(t)
	stow(t, f.url+"/studies", localSamples(t)[0].data)
	var fields strings.Builder
	for i := range 100000 {
		group, element := 0x0009+2*(i/0xF000), 0x1000+i%0xF000
		fmt.Fprintf(&fields, ",%04X%04X", group, element)
	}
	start := time.Now()
	resp, b := get(t, f.url+"/studies?includefield="+fields.String()[1:])
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte("512 attributes")) {
		t.Errorf("100,000 included fields: %d %.200s, want 400 naming the bound", resp.StatusCode, b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing took %v", d)
	}
}

// TestFrameListDeduplicated checks that a frame listed many times is sent
// once.
func TestFrameListDeduplicated(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[2] // three frames
	stow(t, f.url+"/studies", s.data)
	list := "2" + strings.Repeat(",1,2", 10000)
	resp, b := get(t, f.url+s.path()+"/frames/"+list, "Accept", `multipart/related; type="application/octet-stream"`)
	frames := pixelFrames(t, s)
	_, ps := parts(t, resp, b)
	if len(ps) != 2 || !bytes.Equal(ps[0].data, frames[1]) || !bytes.Equal(ps[1].data, frames[0]) {
		t.Errorf("frames 2,1,2,1,…: %d parts, want frames 2 and 1 once each", len(ps))
	}
}

// TestBulkDataBounds checks offsets and lengths that would overflow, and
// that ranged responses carry exactly the bytes they claim.
func TestBulkDataBounds(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[2]
	stow(t, f.url+"/studies", s.data)
	_, md := get(t, f.url+s.path()+"/metadata")
	uri := bulkDataURI(t, md, 0x7FE00010)
	base := uri[:strings.LastIndex(uri[:strings.LastIndex(uri, "/")], "/")]
	pixels := bytes.Join(pixelFrames(t, s), nil)
	for _, c := range []string{
		"/132/9223372036854775807",
		"/9223372036854775807/9223372036854775807",
		"/9223372036854775000/1000",
		"/132/-1",
		"/100000000/1",
	} {
		resp, b := get(t, base+c, "Accept", "application/octet-stream")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("bulkdata%s: %d, %d bytes; want 404", c, resp.StatusCode, len(b))
		}
	}

	// Several ranges: a multipart/byteranges 206 whose parts are the
	// ranges and whose length is what is sent.
	resp, b := get(t, uri, "Accept", "application/octet-stream", "Range", "bytes=0-3,10-19,-5")
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("multi-range: %d", resp.StatusCode)
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(b)) {
		t.Errorf("multi-range: Content-Length %s, %d bytes sent", cl, len(b))
	}
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "multipart/byteranges" {
		t.Fatalf("multi-range: Content-Type %s", mt)
	}
	mr := multipart.NewReader(bytes.NewReader(b), params["boundary"])
	want := [][]byte{pixels[0:4], pixels[10:20], pixels[len(pixels)-5:]}
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			if i != len(want) {
				t.Errorf("multi-range: %d parts, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p)
		if i >= len(want) || !bytes.Equal(got, want[i]) {
			t.Errorf("multi-range part %d: %x", i, got)
		}
	}
	// One range of a multipart/related body.
	resp, b = get(t, uri, "Accept", `multipart/related; type="application/octet-stream"`, "Range", "bytes=4-11")
	if _, ps := parts(t, resp, b); resp.StatusCode != http.StatusPartialContent || len(ps) != 1 || !bytes.Equal(ps[0].data, pixels[4:12]) {
		t.Errorf("multipart range: %d", resp.StatusCode)
	}
	if resp, _ := get(t, uri, "Accept", `multipart/related; type="application/octet-stream"`, "Range", "bytes=5000-"); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("multipart range past the end: %d, want 416", resp.StatusCode)
	}
}

// TestErrorBodies checks that an error's reason, which may quote the
// request, is plain text no browser sniffs, and that every response says
// nosniff.
func TestErrorBodies(t *testing.T) {
	f := newFixture(t)
	s := localSamples(t)[0]
	stow(t, f.url+"/studies", s.data)
	for _, path := range []string{
		"/studies?%3Cscript%3Ealert(1)%3C/script%3E=1",
		"/studies?limit=%3Chtml%3E",
		"/studies/1.2.3/series/4.5.6/instances/7.8.9/frames/%3Cb%3E",
		"/studies/%3Cimg%20src=x%3E",
	} {
		resp, b := get(t, f.url+path)
		if resp.StatusCode < 400 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %q nosniff=%q %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"), b)
		}
	}
	for _, path := range []string{"/studies", s.path() + "/metadata", s.path()} {
		if resp, _ := get(t, f.url+path); resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", path)
		}
	}
	// A long request is not echoed whole.
	resp, b := get(t, f.url+"/studies?"+strings.Repeat("x", 100000)+"=1")
	if resp.StatusCode != 400 || len(b) > 2048 {
		t.Errorf("long bad parameter: %d, %d bytes of reason", resp.StatusCode, len(b))
	}
}

// gatedArchive holds every Open until released, so that a rendering can
// be caught in progress.
type gatedArchive struct {
	dicomweb.Archive
	opened  chan struct{}
	release chan struct{}
}

func (a *gatedArchive) Open(ctx context.Context, in *index.Instance) (storage.Object, error) {
	a.opened <- struct{}{}
	<-a.release
	return a.Archive.Open(ctx, in)
}

func bigImage(t *testing.T, size int) sample {
	t.Helper()
	var b bytes.Buffer
	if _, err := dcmgen.WriteFile(&b, &dcmgen.Instance{Rows: size, Columns: size, BitsAllocated: 16}); err != nil {
		t.Fatal(err)
	}
	return sampleOf(t, "generated", b.Bytes())
}

// status GETs url and returns the status, or 0 if the request fails; it
// is safe to call from any goroutine.
func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRenderBounded checks that renderings are bounded in memory and in
// number: a frame whose rendering would take more than the budget is
// refused, and requests beyond the renderings in progress and the queue
// get 503 with Retry-After.
func TestRenderBounded(t *testing.T) {
	img := bigImage(t, 1024) // 2 MiB of 16-bit pixels
	t.Run("memory", func(t *testing.T) {
		f := newFixture(t, func(s *dicomweb.Server) { s.Limits.RenderMemory = 4 << 20 })
		stow(t, f.url+"/studies", img.data)
		for _, p := range []string{"/rendered", "/thumbnail"} {
			resp, b := get(t, f.url+img.path()+p)
			if resp.StatusCode != http.StatusNotAcceptable || !bytes.Contains(b, []byte("MiB")) {
				t.Errorf("%s of a frame over the budget: %d %s", p, resp.StatusCode, b)
			}
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		var srv *dicomweb.Server
		gate := &gatedArchive{opened: make(chan struct{}), release: make(chan struct{})}
		f := newFixture(t, func(s *dicomweb.Server) {
			s.Limits = dicomweb.Limits{Renders: 1, RenderQueue: 1, RenderWait: time.Minute}
			gate.Archive, s.Archive, srv = s.Archive, gate, s
		})
		stow(t, f.url+"/studies", img.data)
		var wg sync.WaitGroup
		codes := make(chan int, 2)
		for range 2 {
			wg.Go(func() {
				codes <- status(f.url + img.path() + "/thumbnail")
			})
		}
		<-gate.opened // the first holds the one rendering slot
		for srv.RenderWaiting() != 1 {
			time.Sleep(time.Millisecond) // the second waits for it
		}
		resp, b := get(t, f.url+img.path()+"/rendered")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("rendering beyond the queue: %d %q %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
		close(gate.release)
		go func() {
			for range gate.opened {
			}
		}()
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != 200 {
				t.Errorf("a rendering admitted or queued answered %d", c)
			}
		}
		close(gate.opened)
	})
	t.Run("wait", func(t *testing.T) {
		gate := &gatedArchive{opened: make(chan struct{}), release: make(chan struct{})}
		f := newFixture(t, func(s *dicomweb.Server) {
			s.Limits = dicomweb.Limits{Renders: 1, RenderWait: 50 * time.Millisecond}
			gate.Archive, s.Archive = s.Archive, gate
		})
		stow(t, f.url+"/studies", img.data)
		done := make(chan struct{})
		go func() {
			defer close(done)
			status(f.url + img.path() + "/rendered")
		}()
		<-gate.opened
		resp, _ := get(t, f.url+img.path()+"/rendered")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("rendering that waited past RenderWait: %d, want 503", resp.StatusCode)
		}
		close(gate.release)
		<-done
	})
}
