package file_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
)

// benchObjectSize is a typical size of a single-frame image (a 512×512
// CT slice at 16 bits).
const benchObjectSize = 512 << 10

// BenchmarkPut measures Put of 512 KiB objects with known size into a
// directory of their own series, fsyncs included, so that the figure
// shows what durability costs on the machine at hand.
func BenchmarkPut(b *testing.B) {
	s := newStore(b, b.TempDir())
	data := bytes.Repeat([]byte{0x5a}, benchObjectSize)
	b.SetBytes(benchObjectSize)
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("study/series/%d", i)
		i++
		if _, err := s.Put(b.Context(), key, bytes.NewReader(data), benchObjectSize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutParallel is BenchmarkPut with concurrent Puts, as when many
// associations store at once; filesystems can combine their fsyncs.
func BenchmarkPutParallel(b *testing.B) {
	s := newStore(b, b.TempDir())
	data := bytes.Repeat([]byte{0x5a}, benchObjectSize)
	b.SetBytes(benchObjectSize)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Sprintf("study/series/%d", n.Add(1))
			if _, err := s.Put(b.Context(), key, bytes.NewReader(data), benchObjectSize); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
