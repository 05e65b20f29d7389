package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/storage"
)

// The commands that delete, restore, correct and link (pacsd delete,
// restore, retention, correct, patient) record each change in storage
// before the index makes it (see archive.Record), while pacsd serve may
// run on the same storage. A spool in front of S3 is serve's, locked
// while it runs: these commands read through it and write their
// records to the bucket itself.

// recordStore reads through one store and writes to another.
type recordStore struct {
	storage.Store
	writes storage.Store
}

func (r recordStore) Put(ctx context.Context, key string, src io.Reader, size int64) (storage.Info, error) {
	return r.writes.Put(ctx, key, src, size)
}

func (r recordStore) Delete(ctx context.Context, key string) error {
	return r.writes.Delete(ctx, key)
}

// openRecords opens the storage s names for a command that records
// changes; done closes it.
func openRecords(ctx context.Context, s *storeSettings, getenv func(string) string, log *slog.Logger) (storage.Store, closeFunc, error) {
	store, closeStore, err := openStorageReadOnly(ctx, s, s.s3Env(getenv), log)
	if err != nil {
		return nil, nil, err
	}
	direct, spooled, err := bucketOf(s.Storage)
	if err != nil || !spooled {
		return store, closeStore, err
	}
	bucket, closeBucket, err := openBackend(ctx, direct, s.s3Env(getenv), log, false)
	if err != nil {
		closeStore(ctx)
		return nil, nil, err
	}
	return recordStore{Store: store, writes: bucket}, func(ctx context.Context) error {
		closeBucket(ctx)
		return closeStore(ctx)
	}, nil
}

// bucketOf returns the URL of the bucket behind a spooled S3 storage URL,
// and whether u has a spool at all.
func bucketOf(u string) (string, bool, error) {
	if !strings.HasPrefix(u, "s3://") {
		return u, false, nil
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return "", false, fmt.Errorf("storage: %w", err)
	}
	q, err := url.ParseQuery(parsed.RawQuery)
	if err != nil {
		return "", false, fmt.Errorf("storage: %w", err)
	}
	if q.Get("ack") != ackSpool {
		return u, false, nil
	}
	q.Del("ack")
	q.Del("spool_dir")
	parsed.RawQuery = q.Encode()
	return parsed.String(), true, nil
}

// recordsOpened is what a command that records changes opens: the
// storage of the records and the index, and the journal and trash over
// them.
type recordsOpened struct {
	store   storage.Store
	db      *sqlindex.DB
	journal *archive.Journal
	trash   *archive.Trash
	close   func()
}

// openJournal opens the storage for records and the index with opts.
func openJournal(ctx context.Context, b *baseSettings, s *storeSettings, p *process, opts ...sqlindex.Option) (*recordsOpened, error) {
	log, err := b.logger(p.stderr)
	if err != nil {
		return nil, err
	}
	store, closeStore, err := openRecords(ctx, s, p.getenv, log)
	if err != nil {
		return nil, err
	}
	db, err := openIndex(ctx, s.Index, opts...)
	if err != nil {
		closeStore(context.Background())
		return nil, err
	}
	return &recordsOpened{
		store:   store,
		db:      db,
		journal: &archive.Journal{Store: store, Index: db, Logger: log},
		trash:   &archive.Trash{Store: store, Index: db, Logger: log},
		close: func() {
			db.Close()
			closeStore(context.Background())
		},
	}, nil
}

// journaled is the index as the API sees it in pacsd serve: corrections
// and links by hand go through the journal, recorded in storage first.
type journaled struct {
	*sqlindex.DB
	journal *archive.Journal
}

func (j journaled) Correct(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	return j.journal.Correct(ctx, c)
}

func (j journaled) MoveSeries(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	return j.journal.MoveSeries(ctx, c)
}

func (j journaled) Undo(ctx context.Context, id int64, reason, principal string) (*index.Correction, error) {
	return j.journal.Undo(ctx, id, reason, principal)
}

func (j journaled) LinkPatients(ctx context.Context, l index.Link) error {
	return j.journal.LinkPatients(ctx, l)
}

// replayRecords applies the records of changes that a crash kept from
// the index (see archive.ReplayRecords) as pacsd serve starts. Should
// storage or the index fail, it logs why and serve starts all the same:
// the records stay, and the next start applies them.
func replayRecords(ctx context.Context, store storage.Store, db *sqlindex.DB, log *slog.Logger) {
	res, err := archive.ReplayRecords(ctx, store, db, log)
	switch {
	case err != nil:
		log.Error("records of deletions, corrections and links not replayed; the next start tries again", "err", err)
	case res.Applied > 0 || res.Refused > 0:
		log.Info("records of changes a crash kept from the index applied", "applied", res.Applied, "refused", res.Refused)
	}
}
