package s3_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage/s3"
)

// TestPutMemory checks that a Put of unknown size, the DIMSE case, holds
// one part in memory rather than the object: 200 MiB go up with the
// default part size while the heap is sampled.
//
// It does not run in parallel, so that the heap it measures is its own.
func TestPutMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 200 MiB")
	}
	const size = 200 << 20
	srv := testpeer.StartMinIOT(t)
	s := newStore(t, config(srv, freshBucket()))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			mu.Lock()
			peak = max(peak, m.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	start := time.Now()
	info, err := s.Put(t.Context(), "big", newGen(size, 42), -1)
	elapsed := time.Since(start)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("Put stored %d bytes, want %d", info.Size, size)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	grew := int64(peak) - int64(before.HeapInuse)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("Put of %d MiB of unknown size in %v (%.0f MiB/s) with %d MiB parts: heap in use grew by at most %.1f MiB; %.1f MiB allocated in all",
		size>>20, elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(), s3.DefaultPartSize>>20,
		float64(grew)/(1<<20), float64(allocated)/(1<<20))
	// One part buffer, plus what minio-go and net/http hold per request
	// (a signing chunk, transport buffers), with room for the noise of a
	// garbage-collected heap; an object held whole would be 200 MiB.
	if limit := int64(2*s3.DefaultPartSize + 8<<20); grew > limit {
		t.Errorf("heap in use grew by %d bytes during the Put, more than %d", grew, limit)
	}
	// Signing allocates a little for every 64 KiB chunk sent, so the
	// total grows slowly with the object; a copy of every part would
	// allocate the object's size again.
	if limit := uint64(size / 2); allocated > limit {
		t.Errorf("the Put allocated %d bytes, more than %d: parts are copied rather than sent from the one buffer", allocated, limit)
	}

	if sum, n := readSum(t, s, "big"); n != size || sum != genSum(size, 42) {
		t.Errorf("the object reads back as %d other bytes", n)
	}
}
