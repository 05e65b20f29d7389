package codec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pacsd/pacsd/dicom/uid"
)

// errReaderClosed is what Transcode's writes get once the reader of
// TranscodeReader is closed, which ends the conversion.
var errReaderClosed = errors.New("codec: transcode reader closed")

// TranscodeReader returns the data set src, encoded in transfer syntax
// from, converted to transfer syntax to as Transcode writes it, for the
// caller to read: a sender that wants a reader, not a writer. The
// conversion runs in a goroutine, one pipe write ahead of the reads, so
// memory is what Transcode holds (one frame compressed and decoded).
//
// An error of the conversion, ctx's included, is returned by Read once
// the bytes before it have been read. The reader owns src: Close ends
// the conversion (it stops at its next write, or at its next frame as ctx
// is cancelled), waits for its goroutine, and then closes src. Close must
// be called, even after Read has returned io.EOF or an error.
func (r *Registry) TranscodeReader(ctx context.Context, src io.ReadCloser, from, to string, opts TranscodeOptions) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	t := &transcodeReader{pr: pr, src: src, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		_, err := r.Transcode(ctx, pw, src, from, to, opts)
		if err != nil {
			err = fmt.Errorf("converting from %s to %s: %w", uid.Name(from), uid.Name(to), err)
		}
		pw.CloseWithError(err)
	}()
	return t
}

// transcodeReader is the reading end of TranscodeReader's conversion.
type transcodeReader struct {
	pr     *io.PipeReader
	src    io.Closer
	cancel context.CancelFunc
	done   chan struct{}

	once sync.Once
	err  error
}

func (t *transcodeReader) Read(p []byte) (int, error) { return t.pr.Read(p) }

func (t *transcodeReader) Close() error {
	t.once.Do(func() {
		t.cancel()
		t.pr.CloseWithError(errReaderClosed)
		<-t.done
		t.err = t.src.Close()
	})
	return t.err
}
