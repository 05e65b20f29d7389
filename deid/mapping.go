package deid

import (
	"context"
	"sync"
)

// Kind says what a Mapping replaced.
type Kind string

const (
	KindUID     Kind = "uid"     // a UID
	KindPatient Kind = "patient" // a patient ID (with its issuer as ID^^^ISSUER)
)

// Mapping is one replacement: the original value and what replaced it.
type Mapping struct {
	Kind        Kind
	Original    string
	Replacement string
}

// MappingStore keeps the replacements made, so that an admin can find the
// original of a de-identified instance or patient. The index implements
// it; Record is called once per instance with all its replacements, and
// must accept replacements it already holds.
type MappingStore interface {
	Record(ctx context.Context, m []Mapping) error
}

// Reidentifier finds originals; stores that support re-identification
// implement it beside MappingStore.
type Reidentifier interface {
	Original(ctx context.Context, kind Kind, replacement string) (string, bool, error)
}

// MemoryMapping is a MappingStore and Reidentifier in memory, for tests
// and one-off exports.
type MemoryMapping struct {
	mu sync.Mutex
	m  map[Kind]map[string]string // replacement → original
}

var (
	_ MappingStore = (*MemoryMapping)(nil)
	_ Reidentifier = (*MemoryMapping)(nil)
)

// Record implements MappingStore.
func (s *MemoryMapping) Record(_ context.Context, ms []Mapping) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[Kind]map[string]string{}
	}
	for _, m := range ms {
		if s.m[m.Kind] == nil {
			s.m[m.Kind] = map[string]string{}
		}
		s.m[m.Kind][m.Replacement] = m.Original
	}
	return nil
}

// Original implements Reidentifier.
func (s *MemoryMapping) Original(_ context.Context, kind Kind, replacement string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.m[kind][replacement]
	return o, ok, nil
}

// Len returns how many replacements are held.
func (s *MemoryMapping) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.m {
		n += len(m)
	}
	return n
}
