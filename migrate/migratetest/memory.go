// Package migratetest holds an in-memory migrate.State and the
// conformance suite every State passes (Run): the in-memory one here and
// the index's on SQLite and PostgreSQL.
package migratetest

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pacsd/pacsd/migrate"
)

// Memory is a migrate.State in memory, for tests. Its zero value is
// ready to use.
type Memory struct {
	mu         sync.Mutex
	next       int
	migrations map[string]*migrate.Migration
	studies    map[string]map[string]*migrate.Study
	files      map[string]map[string]*migrate.File
	// Now is the clock of Study.Updated; time.Now when nil.
	Now func() time.Time
}

var _ migrate.State = (*Memory)(nil)

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

func (m *Memory) init() {
	if m.migrations == nil {
		m.migrations = map[string]*migrate.Migration{}
		m.studies = map[string]map[string]*migrate.Study{}
		m.files = map[string]map[string]*migrate.File{}
	}
}

// Begin implements migrate.State.
func (m *Memory) Begin(ctx context.Context, source, kind string) (*migrate.Migration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	for _, g := range m.migrations {
		if g.Source == source {
			c := *g
			return &c, nil
		}
	}
	m.next++
	g := &migrate.Migration{ID: "m" + strconv.Itoa(m.next), Source: source, Kind: kind, Started: m.now()}
	m.migrations[g.ID] = g
	m.studies[g.ID] = map[string]*migrate.Study{}
	m.files[g.ID] = map[string]*migrate.File{}
	c := *g
	return &c, nil
}

// Migrations implements migrate.State.
func (m *Memory) Migrations(ctx context.Context) ([]*migrate.Migration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*migrate.Migration
	for _, g := range m.migrations {
		c := *g
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b *migrate.Migration) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	return out, nil
}

// Migration implements migrate.State.
func (m *Memory) Migration(ctx context.Context, id string) (*migrate.Migration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.migrations[id]
	if !ok {
		return nil, fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound)
	}
	c := *g
	return &c, nil
}

// Claim implements migrate.State.
func (m *Memory) Claim(ctx context.Context, id, prev, owner string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.migrations[id]
	if !ok {
		return fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound)
	}
	if g.Owner != prev {
		return fmt.Errorf("%w: %s", migrate.ErrClaimed, g.Owner)
	}
	g.Owner = owner
	g.Running = owner != ""
	g.Heartbeat = now.UTC()
	return nil
}

// Update implements migrate.State.
func (m *Memory) Update(ctx context.Context, u *migrate.Migration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.migrations[u.ID]
	if !ok {
		return fmt.Errorf("migration %s: %w", u.ID, migrate.ErrNotFound)
	}
	g.Running, g.Heartbeat, g.Waiting, g.Finished, g.Window = u.Running, u.Heartbeat.UTC(), u.Waiting, u.Finished, u.Window
	return nil
}

func (m *Memory) studiesOf(id string) (map[string]*migrate.Study, error) {
	s, ok := m.studies[id]
	if !ok {
		return nil, fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound)
	}
	return s, nil
}

// AddStudies implements migrate.State.
func (m *Memory) AddStudies(ctx context.Context, id string, studies []*migrate.Study) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	rows, err := m.studiesOf(id)
	if err != nil {
		return err
	}
	for _, s := range studies {
		c := *s
		if old, ok := rows[s.StudyInstanceUID]; ok {
			c.State, c.Attempts, c.LastError, c.Bytes = old.State, old.Attempts, old.LastError, old.Bytes
			c.InstancesHere = old.InstancesHere
			if old.InstancesAtSource > 0 && old.State != migrate.Pending {
				c.InstancesAtSource = old.InstancesAtSource
			}
		} else {
			c.State, c.Attempts, c.LastError, c.Bytes, c.InstancesHere = migrate.Pending, 0, "", 0, 0
		}
		c.Updated = m.now()
		rows[s.StudyInstanceUID] = &c
	}
	return nil
}

// Study implements migrate.State.
func (m *Memory) Study(ctx context.Context, id, study string) (*migrate.Study, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	rows, err := m.studiesOf(id)
	if err != nil {
		return nil, err
	}
	s, ok := rows[study]
	if !ok {
		return nil, fmt.Errorf("study %s: %w", study, migrate.ErrNotFound)
	}
	c := *s
	return &c, nil
}

// PutStudy implements migrate.State.
func (m *Memory) PutStudy(ctx context.Context, id string, s *migrate.Study) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	rows, err := m.studiesOf(id)
	if err != nil {
		return err
	}
	if !s.State.Valid() {
		return fmt.Errorf("migratetest: study %s: state %q", s.StudyInstanceUID, s.State)
	}
	c := *s
	c.Updated = m.now()
	rows[s.StudyInstanceUID] = &c
	return nil
}

// Studies implements migrate.State.
func (m *Memory) Studies(ctx context.Context, id string, f migrate.StudyFilter) iter.Seq2[*migrate.Study, error] {
	return func(yield func(*migrate.Study, error) bool) {
		m.mu.Lock()
		m.init()
		rows, err := m.studiesOf(id)
		var list []*migrate.Study
		for _, s := range rows {
			if s.StudyInstanceUID > f.After && (len(f.States) == 0 || slices.Contains(f.States, s.State)) {
				c := *s
				list = append(list, &c)
			}
		}
		m.mu.Unlock()
		if err != nil {
			yield(nil, err)
			return
		}
		slices.SortFunc(list, func(a, b *migrate.Study) int { return cmp.Compare(a.StudyInstanceUID, b.StudyInstanceUID) })
		if f.Limit > 0 && len(list) > f.Limit {
			list = list[:f.Limit]
		}
		for _, s := range list {
			if !yield(s, nil) {
				return
			}
		}
	}
}

// PatientStudies implements migrate.State.
func (m *Memory) PatientStudies(ctx context.Context, id, patientID, issuer string) ([]*migrate.Study, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	rows, err := m.studiesOf(id)
	if err != nil {
		return nil, err
	}
	var out []*migrate.Study
	for _, s := range rows {
		if s.PatientID == patientID && s.IssuerOfPatientID == issuer {
			c := *s
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *migrate.Study) int { return cmp.Compare(a.StudyInstanceUID, b.StudyInstanceUID) })
	return out, nil
}

// Totals implements migrate.State.
func (m *Memory) Totals(ctx context.Context, id string) (migrate.Totals, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	rows, err := m.studiesOf(id)
	if err != nil {
		return migrate.Totals{}, err
	}
	t := migrate.Totals{ByState: map[migrate.StudyState]int{}}
	for _, s := range rows {
		t.Studies++
		t.ByState[s.State]++
		t.InstancesAtSource += s.InstancesAtSource
		t.InstancesHere += s.InstancesHere
		t.Bytes += s.Bytes
	}
	return t, nil
}

// Progress implements migrate.State.
func (m *Memory) Progress(ctx context.Context, id string, since time.Time) (int, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	rows, err := m.studiesOf(id)
	if err != nil {
		return 0, 0, err
	}
	n, b := 0, int64(0)
	for _, s := range rows {
		if s.State == migrate.Verified && !s.Updated.Before(since) {
			n++
			b += s.Bytes
		}
	}
	return n, b, nil
}

// PutFile implements migrate.State.
func (m *Memory) PutFile(ctx context.Context, id string, f *migrate.File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	files, ok := m.files[id]
	if !ok {
		return fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound)
	}
	c := *f
	c.ModTime = c.ModTime.UTC()
	files[f.Path] = &c
	return nil
}

// File implements migrate.State.
func (m *Memory) File(ctx context.Context, id, path string) (*migrate.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	files, ok := m.files[id]
	if !ok {
		return nil, fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound)
	}
	f, ok := files[path]
	if !ok {
		return nil, fmt.Errorf("file %s: %w", path, migrate.ErrNotFound)
	}
	c := *f
	return &c, nil
}

// Files implements migrate.State.
func (m *Memory) Files(ctx context.Context, id string, states ...migrate.FileState) iter.Seq2[*migrate.File, error] {
	return func(yield func(*migrate.File, error) bool) {
		m.mu.Lock()
		m.init()
		files, ok := m.files[id]
		var list []*migrate.File
		for _, f := range files {
			if len(states) == 0 || slices.Contains(states, f.State) {
				c := *f
				list = append(list, &c)
			}
		}
		m.mu.Unlock()
		if !ok {
			yield(nil, fmt.Errorf("migration %s: %w", id, migrate.ErrNotFound))
			return
		}
		slices.SortFunc(list, func(a, b *migrate.File) int { return cmp.Compare(a.Path, b.Path) })
		for _, f := range list {
			if !yield(f, nil) {
				return
			}
		}
	}
}
