package file

import (
	"io"
	"os"
	"syscall"
)

// writeback wraps f so that every chunk written is handed to the disk at
// once (sync_file_range with SYNC_FILE_RANGE_WRITE, which does not wait):
// the disk then writes an object while the rest of it still arrives, and
// the fsync that ends Put waits only for the tail. It changes nothing
// about durability, which the fsync alone provides.
func writeback(f *os.File) io.Writer {
	return &writebackFile{f: f, fd: int(f.Fd())}
}

type writebackFile struct {
	f   *os.File
	fd  int
	off int64
}

const syncFileRangeWrite = 0x2 // SYNC_FILE_RANGE_WRITE

func (w *writebackFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if n > 0 {
		// A filesystem that does not support it just waits for the
		// fsync; the error is not worth failing a Put for.
		_ = syscall.SyncFileRange(w.fd, w.off, int64(n), syncFileRangeWrite)
		w.off += int64(n)
	}
	return n, err
}
