package storage

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestExactReader(t *testing.T) {
	errBoom := errors.New("boom")
	cases := []struct {
		name    string
		r       func() io.Reader
		size    int64
		wantErr error // nil means the bytes must come through intact
	}{
		{"exact", func() io.Reader { return strings.NewReader("hello") }, 5, nil},
		{"exact-empty", func() io.Reader { return strings.NewReader("") }, 0, nil},
		{"exact-data-with-EOF", func() io.Reader { return iotest.DataErrReader(strings.NewReader("hello")) }, 5, nil},
		{"exact-one-byte-reads", func() io.Reader { return iotest.OneByteReader(strings.NewReader("hello")) }, 5, nil},
		{"unknown-size", func() io.Reader { return strings.NewReader("hello") }, -1, nil},
		{"short", func() io.Reader { return strings.NewReader("hell") }, 5, ErrSizeMismatch},
		{"empty-but-not-zero", func() io.Reader { return strings.NewReader("") }, 1, ErrSizeMismatch},
		{"long", func() io.Reader { return strings.NewReader("hello!") }, 5, ErrSizeMismatch},
		{"zero-but-not-empty", func() io.Reader { return strings.NewReader("x") }, 0, ErrSizeMismatch},
		{"long-in-later-read", func() io.Reader {
			return io.MultiReader(strings.NewReader("hello"), strings.NewReader("!"))
		}, 5, ErrSizeMismatch},
		{"reader-error", func() io.Reader {
			return io.MultiReader(strings.NewReader("he"), iotest.ErrReader(errBoom))
		}, 5, errBoom},
		{"reader-error-after-size", func() io.Reader {
			return io.MultiReader(strings.NewReader("hello"), iotest.ErrReader(errBoom))
		}, 5, errBoom},
		{"no-progress", func() io.Reader {
			return io.MultiReader(strings.NewReader("hello"), emptyReader{})
		}, 5, io.ErrNoProgress},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r()
			got, err := io.ReadAll(ExactReader(r, tc.size))
			if tc.wantErr == nil {
				want, _ := io.ReadAll(tc.r())
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("read %q, %v; want %q, nil", got, err, want)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestExactReaderFailsBeforeLastByte checks the property that lets an
// upload with a Content-Length be aborted: a consumer that reads no more
// than size bytes, as net/http copies a body through an io.LimitReader,
// still receives the error.
func TestExactReaderFailsBeforeLastByte(t *testing.T) {
	r := ExactReader(strings.NewReader("hello, world"), 5)
	var sent bytes.Buffer
	n, err := io.Copy(&sent, io.LimitReader(r, 5))
	if n != 5 || !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("copying the announced size = %d, %v; want 5, %v", n, err, ErrSizeMismatch)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("a later Read returned %v, want the same error", err)
	}
}

// TestExactReaderReadsNoFurther checks that at most size+1 bytes are taken
// from the source, so a wrong size cannot make a backend drain an endless
// stream.
func TestExactReaderReadsNoFurther(t *testing.T) {
	src := strings.NewReader(strings.Repeat("x", 1000))
	io.Copy(io.Discard, ExactReader(src, 10))
	if consumed := 1000 - src.Len(); consumed != 11 {
		t.Errorf("consumed %d bytes, want 11", consumed)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestFill(t *testing.T) {
	cases := []struct {
		name    string
		r       io.Reader
		buf     int
		want    string
		wantErr error
	}{
		{"full", strings.NewReader("hello world"), 5, "hello", nil},
		{"one-byte-reads", iotest.OneByteReader(strings.NewReader("hello")), 5, "hello", nil},
		{"short-ends-with-EOF", strings.NewReader("hel"), 5, "hel", io.EOF},
		{"exact-then-EOF-later", strings.NewReader("hello"), 5, "hello", nil},
		{"data-with-EOF", iotest.DataErrReader(strings.NewReader("hello")), 8, "hello", io.EOF},
		// The reader's own io.ErrUnexpectedEOF is passed on, never made
		// from an early io.EOF.
		{"reader-unexpected-EOF", io.MultiReader(strings.NewReader("he"), iotest.ErrReader(io.ErrUnexpectedEOF)), 5, "he", io.ErrUnexpectedEOF},
		{"no-progress", emptyReader{}, 5, "", io.ErrNoProgress},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, c.buf)
			n, err := Fill(c.r, buf)
			if string(buf[:n]) != c.want || err != c.wantErr {
				t.Errorf("Fill = %q, %v; want %q, %v", buf[:n], err, c.want, c.wantErr)
			}
		})
	}
}
