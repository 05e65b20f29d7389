package s3_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// benchObjectSize is a typical size of a single-frame image (a 512×512
// CT slice at 16 bits), as in storage/file's benchmark.
const benchObjectSize = 512 << 10

// BenchmarkPut measures Put of 512 KiB objects into MinIO on loopback,
// with the size known (one streaming PUT) and unknown (buffered, then one
// PUT), and unknown from several goroutines at once, as when many DIMSE
// associations store together.
func BenchmarkPut(b *testing.B) {
	srv := testpeer.StartMinIOT(b)
	s := newStore(b, config(srv, freshBucket()))
	data := bytes.Repeat([]byte{0x5a}, benchObjectSize)
	var n atomic.Int64
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"known", benchObjectSize},
		{"unknown", -1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(benchObjectSize)
			for b.Loop() {
				key := fmt.Sprintf("study/series/%d", n.Add(1))
				if _, err := s.Put(b.Context(), key, bytes.NewReader(data), tc.size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("unknown-parallel", func(b *testing.B) {
		b.SetBytes(benchObjectSize)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key := fmt.Sprintf("study/series/%d", n.Add(1))
				if _, err := s.Put(b.Context(), key, bytes.NewReader(data), -1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
