package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Head identifies the latest record of a journal: its sequence number and
// the SHA-256 of its line. The zero Head is that of an empty journal.
type Head struct {
	Seq  uint64
	Hash [sha256.Size]byte
}

// String returns "seq:hash".
func (h Head) String() string {
	return strconv.FormatUint(h.Seq, 10) + ":" + hex.EncodeToString(h.Hash[:])
}

// HeadStore keeps a journal's head somewhere other than the journal (the
// index), so that removing the last records of the journal is detected
// too. SaveHead is called after each synced batch, from the journal's
// goroutine; it should be quick.
type HeadStore interface {
	SaveHead(ctx context.Context, h Head) error
	LoadHead(ctx context.Context) (Head, error)
}

// Options configure a Journal. The zero value is usable.
type Options struct {
	// Heads, if set, is told every new head.
	Heads HeadStore
	// Forward, if set, receives every message after it is journalled,
	// e.g. (*Syslog).Send. It must not block.
	Forward func(*Message)
	// QueueSize bounds the messages waiting to be written (default
	// 4096).
	QueueSize int
	// QueueWait is the longest Log waits for room in a full queue
	// before the message is counted lost (default 2 s).
	QueueWait time.Duration
	// Linger is how long the writer waits, after a message arrives, for
	// more to write with it under one sync (default 25 ms; negative:
	// none). Each sync costs a disk flush and a save of the head, so
	// without it a stream of single C-STOREs pays two flushes per
	// instance for its audit messages alone. Sync and Close do not wait.
	Linger time.Duration
	// MaxFileSize starts a new file once the current one is larger,
	// checked before each batch (default 64 MiB).
	MaxFileSize int64
	// Source is the audit source ID (AuditSourceID) of messages that
	// have none, usually pacsd's AE title; default "pacsd".
	Source string
	Logger *slog.Logger
	Now    func() time.Time
}

// record is one line of the journal.
type record struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Prev     string    `json:"prev"`
	Event    string    `json:"event"`
	Action   string    `json:"action,omitempty"`
	Outcome  string    `json:"outcome"`
	Patients []string  `json:"patients,omitempty"`
	Studies  []string  `json:"studies,omitempty"`
	Users    []string  `json:"users,omitempty"`
	Message  string    `json:"message"`
}

// Journal appends audit messages to files under a directory. Log is safe
// for concurrent use.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger

	queue   chan item
	dropped atomic.Int64
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool

	// Owned by the writer goroutine.
	f     *os.File
	num   int   // number of the current file
	size  int64 // of the current file
	head  Head
	heads atomic.Value // Head, for Head()
}

type item struct {
	msg  *Message
	done chan error // a sync marker when not nil
	stop bool       // the last item: the writer ends after it
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("audit: journal closed")

const filePrefix, fileSuffix = "journal-", ".log"

func fileName(n int) string { return fmt.Sprintf("%s%06d%s", filePrefix, n, fileSuffix) }

// journalFiles returns the journal files of dir in order.
func journalFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, filePrefix) && strings.HasSuffix(n, fileSuffix) && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Open opens the journal in dir, creating it if needed, and starts its
// writer. A last line left incomplete by a crash is cut off. If the head
// store knows a later head than the journal holds, records were removed:
// Open writes a Security Alert saying so and carries on.
func Open(ctx context.Context, dir string, opts Options) (*Journal, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.QueueWait <= 0 {
		opts.QueueWait = 2 * time.Second
	}
	if opts.Linger == 0 {
		opts.Linger = 25 * time.Millisecond
	}
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = 64 << 20
	}
	if opts.Source == "" {
		opts.Source = "pacsd"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	j := &Journal{dir: dir, opts: opts, log: opts.Logger, queue: make(chan item, opts.QueueSize), done: make(chan struct{})}
	if j.log == nil {
		j.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	names, err := journalFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	j.num = 1
	if len(names) > 0 {
		last := names[len(names)-1]
		j.num, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(last, filePrefix), fileSuffix))
		// The last record may be in an earlier file when the last one
		// is empty.
		for i := len(names) - 1; i >= 0; i-- {
			h, found, err := lastRecord(filepath.Join(dir, names[i]), i == len(names)-1, j.log)
			if err != nil {
				return nil, err
			}
			if found {
				j.head = h
				break
			}
		}
	}
	if j.f, err = os.OpenFile(filepath.Join(dir, fileName(j.num)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	st, err := j.f.Stat()
	if err != nil {
		j.f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	j.size = st.Size()
	j.heads.Store(j.head)
	var missing *Message
	if opts.Heads != nil {
		stored, err := opts.Heads.LoadHead(ctx)
		if err != nil {
			j.f.Close()
			return nil, fmt.Errorf("audit: load head: %w", err)
		}
		if stored.Seq > j.head.Seq {
			why := fmt.Sprintf("audit journal ends at record %d but record %s was written: records were removed", j.head.Seq, stored)
			j.log.Error(why, "dir", dir)
			missing = SecurityAlert(opts.Now(), TypeAuditRecordingStopped, SeriousFailure,
				Participant{UserID: opts.Source}, why, URIObject(filepath.Join(dir, fileName(j.num))))
		}
	}
	go j.run()
	if missing != nil {
		j.Log(missing)
	}
	return j, nil
}

// lastRecord returns the head of the last complete record of a file. When
// truncate is set, an incomplete last line is cut off.
func lastRecord(path string, truncate bool, log *slog.Logger) (Head, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Head{}, false, fmt.Errorf("audit: %w", err)
	}
	end := len(b)
	if end > 0 && b[end-1] != '\n' {
		cut := strings.LastIndexByte(string(b), '\n') + 1
		if truncate {
			log.Warn("audit journal: cutting off an incomplete last record, written when the process stopped", "file", path, "bytes", end-cut)
			if err := os.Truncate(path, int64(cut)); err != nil {
				return Head{}, false, fmt.Errorf("audit: %w", err)
			}
		}
		end = cut
	}
	if end == 0 {
		return Head{}, false, nil
	}
	start := strings.LastIndexByte(string(b[:end-1]), '\n') + 1
	line := b[start : end-1]
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return Head{}, false, fmt.Errorf("audit: %s: last record: %w", path, err)
	}
	return Head{Seq: r.Seq, Hash: sha256.Sum256(line)}, true, nil
}

// Head returns the head as of the last synced batch.
func (j *Journal) Head() Head { return j.heads.Load().(Head) }

// Log queues m for the journal, which then owns it. It returns at once unless the queue is
// full, and then waits at most QueueWait before counting m lost; lost
// messages are reported by a Security Alert in the journal as soon as it
// catches up.
func (j *Journal) Log(m *Message) {
	if m == nil {
		return
	}
	select {
	case <-j.done:
		j.dropped.Add(1)
		return
	case j.queue <- item{msg: m}:
		return
	default:
	}
	t := time.NewTimer(j.opts.QueueWait)
	defer t.Stop()
	select {
	case j.queue <- item{msg: m}:
	case <-t.C:
		j.dropped.Add(1)
	case <-j.done:
		j.dropped.Add(1)
	}
}

// Sync waits until every message logged before it is written and synced.
func (j *Journal) Sync(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case j.queue <- item{done: done}:
	case <-j.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued, syncs and stops the journal.
func (j *Journal) Close(ctx context.Context) error {
	j.closeMu.Lock()
	if j.closed {
		j.closeMu.Unlock()
		return nil
	}
	j.closed = true
	j.closeMu.Unlock()
	done := make(chan error, 1)
	select {
	case j.queue <- item{done: done, stop: true}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if n := j.dropped.Load(); n > 0 {
		j.log.Error("audit journal closed with messages lost", "messages", n)
	}
	return errors.Join(<-done, j.f.Close())
}

// maxBatch bounds the messages written per sync.
const maxBatch = 512

// run is the writer: it takes what is queued, writes it, syncs, saves the
// head and answers the sync markers.
func (j *Journal) run() {
	defer close(j.done)
	var batch []item
	for {
		batch = append(batch[:0], <-j.queue)
		stop, urgent := batch[0].stop, batch[0].done != nil
		var linger *time.Timer
		if !stop && !urgent && j.opts.Linger > 0 {
			linger = time.NewTimer(j.opts.Linger)
		}
	drain:
		for !stop && len(batch) < maxBatch {
			if urgent || linger == nil {
				select {
				case it := <-j.queue:
					batch = append(batch, it)
					stop, urgent = it.stop, urgent || it.done != nil
				default:
					break drain
				}
				continue
			}
			select {
			case it := <-j.queue:
				batch = append(batch, it)
				stop, urgent = it.stop, it.done != nil
			case <-linger.C:
				break drain
			}
		}
		if linger != nil {
			linger.Stop()
		}
		err := j.write(batch)
		for _, it := range batch {
			if it.done != nil {
				it.done <- err
			}
		}
		if stop {
			return
		}
	}
}

// write appends the batch's messages and syncs. On failure the file is
// cut back to where the batch began and the messages are counted lost.
func (j *Journal) write(batch []item) error {
	var msgs []*Message
	if n := j.dropped.Swap(0); n > 0 {
		why := fmt.Sprintf("%d audit messages lost: the journal could not keep up or could not be written", n)
		j.log.Error(why)
		msgs = append(msgs, SecurityAlert(j.opts.Now(), TypeAuditRecordingStopped, SeriousFailure, Participant{UserID: j.opts.Source}, why))
	}
	for _, it := range batch {
		if it.msg != nil {
			if it.msg.Source == "" {
				it.msg.Source = j.opts.Source
			}
			msgs = append(msgs, it.msg)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if j.size >= j.opts.MaxFileSize {
		if err := j.rotate(); err != nil {
			j.dropped.Add(int64(len(msgs)))
			j.log.Error("audit journal: cannot start a new file", "err", err)
			return err
		}
	}
	head := j.head
	var buf []byte
	for _, m := range msgs {
		line, err := encodeRecord(m, head.Seq+1, head.Hash)
		if err != nil {
			j.log.Error("audit journal: cannot encode a message", "event", m.Event.Meaning, "err", err)
			continue
		}
		head = Head{Seq: head.Seq + 1, Hash: sha256.Sum256(line)}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := j.f.Write(buf); err != nil {
		return j.failed(len(msgs), err)
	}
	if err := j.f.Sync(); err != nil {
		return j.failed(len(msgs), err)
	}
	j.size += int64(len(buf))
	j.head = head
	j.heads.Store(head)
	if j.opts.Heads != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := j.opts.Heads.SaveHead(ctx, head); err != nil {
			j.log.Warn("audit journal: cannot save the head", "err", err)
		}
		cancel()
	}
	if j.opts.Forward != nil {
		for _, m := range msgs {
			j.opts.Forward(m)
		}
	}
	return nil
}

// failed cuts the file back to its last good size after a failed write.
func (j *Journal) failed(n int, err error) error {
	j.log.Error("audit journal: write failed; messages lost", "messages", n, "err", err)
	j.dropped.Add(int64(n))
	if terr := j.f.Truncate(j.size); terr != nil {
		j.log.Error("audit journal: cannot cut off a failed write", "err", terr)
	}
	return fmt.Errorf("audit: %w", err)
}

func (j *Journal) rotate() error {
	if err := j.f.Close(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(j.dir, fileName(j.num+1)), os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		// Keep writing where we were rather than lose records.
		if f2, err2 := os.OpenFile(filepath.Join(j.dir, fileName(j.num)), os.O_WRONLY|os.O_APPEND, 0o600); err2 == nil {
			j.f = f2
		}
		return err
	}
	if d, err := os.Open(j.dir); err == nil {
		d.Sync() // the new file's name is durable
		d.Close()
	}
	j.f, j.num, j.size = f, j.num+1, 0
	return nil
}

// encodeRecord returns the line of a record, without its newline.
func encodeRecord(m *Message, seq uint64, prev [sha256.Size]byte) ([]byte, error) {
	x, err := m.AppendXML(nil)
	if err != nil {
		return nil, err
	}
	r := record{
		Seq: seq, Time: m.Time.UTC(), Prev: hex.EncodeToString(prev[:]),
		Event: m.Event.Code, Action: string(m.Action), Outcome: string(m.Outcome),
		Patients: m.patients(), Studies: m.studies(), Users: m.users(),
		Message: string(x),
	}
	if r.Outcome == "" {
		r.Outcome = string(Success)
	}
	return json.Marshal(r)
}

// FileHead is a HeadStore in a file, written atomically (temporary file,
// sync, rename). Keep it outside the journal's directory: whoever can
// remove records there should not also find the head beside them.
type FileHead struct{ Path string }

var _ HeadStore = FileHead{}

// SaveHead implements HeadStore.
func (f FileHead) SaveHead(_ context.Context, h Head) error {
	tmp := f.Path + ".tmp"
	if err := os.WriteFile(tmp, []byte(h.String()+"\n"), 0o600); err != nil {
		return err
	}
	t, err := os.Open(tmp)
	if err != nil {
		return err
	}
	serr := t.Sync()
	t.Close()
	if serr != nil {
		return serr
	}
	return os.Rename(tmp, f.Path)
}

// LoadHead implements HeadStore; a missing file is the zero Head.
func (f FileHead) LoadHead(context.Context) (Head, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Head{}, nil
	}
	if err != nil {
		return Head{}, err
	}
	return ParseHead(strings.TrimSpace(string(b)))
}

// ParseHead reads a Head as Head.String writes it.
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	var h Head
	if !ok || err != nil || len(hash) != 2*sha256.Size {
		return h, fmt.Errorf("audit: head %q: want SEQ:SHA256HEX", s)
	}
	if _, err := hex.Decode(h.Hash[:], []byte(hash)); err != nil {
		return h, fmt.Errorf("audit: head %q: want SEQ:SHA256HEX", s)
	}
	h.Seq = n
	return h, nil
}
