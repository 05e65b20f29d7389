package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// hasher computes the SHA-256 of an object on a goroutine of its own, so
// that hashing overlaps with writing the object and waiting for its
// fsync instead of adding to the time before the C-STORE response.
type hasher struct {
	h     hash.Hash
	ch    chan []byte
	done  chan struct{}
	close func() // ends the hashing goroutine; safe to call more than once
}

// hashChunk is the largest piece handed to the hashing goroutine at once;
// a few of them in flight bound the memory per object.
const hashChunk = 256 << 10

var chunkPool = sync.Pool{New: func() any { return new([hashChunk]byte) }}

func newHasher() *hasher {
	h := &hasher{h: sha256.New(), ch: make(chan []byte, 4), done: make(chan struct{})}
	h.close = sync.OnceFunc(func() {
		close(h.ch)
		<-h.done
	})
	go func() {
		defer close(h.done)
		for b := range h.ch {
			h.h.Write(b)
			chunkPool.Put((*[hashChunk]byte)(b[:hashChunk]))
		}
	}()
	return h
}

// Write hands a copy of p to the hashing goroutine.
func (h *hasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		buf := chunkPool.Get().(*[hashChunk]byte)
		c := copy(buf[:], p)
		h.ch <- buf[:c]
		p = p[c:]
	}
	return n, nil
}

// Sum waits for everything written to be hashed and returns the digest in
// lower-case hexadecimal. Write must not be called after Sum.
func (h *hasher) Sum() string {
	h.close()
	return hex.EncodeToString(h.h.Sum(nil))
}
