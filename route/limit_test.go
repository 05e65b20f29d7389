package route

import (
	"bytes"
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// TestLimiter: 4 MB read through a 16 Mbit/s cap take 2 s (the first
// tenth of a second's worth passes at once, the bucket's burst).
func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(16)
		start := time.Now()
		n, err := io.Copy(io.Discard, l.Reader(context.Background(), bytes.NewReader(make([]byte, 4e6))))
		if err != nil || n != 4e6 {
			t.Fatalf("copied %d, %v", n, err)
		}
		if d := time.Since(start); d < 1900*time.Millisecond || d > 2*time.Second {
			t.Errorf("4 MB at 16 Mbit/s took %s, want 1.9 to 2 s", d)
		}
	})
	if NewLimiter(0).Reader(context.Background(), bytes.NewReader(nil)) == nil {
		t.Error("no limit gave no reader")
	}
}

// TestLimiterShared: two readers share one cap.
func TestLimiterShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(8)
		start := time.Now()
		done := make(chan struct{})
		for range 2 {
			go func() {
				io.Copy(io.Discard, l.Reader(context.Background(), bytes.NewReader(make([]byte, 1e6))))
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		if d := time.Since(start); d < 1800*time.Millisecond {
			t.Errorf("2 MB at 8 Mbit/s through two readers took %s, want about 2 s", d)
		}
	})
}
