package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/pacsd/pacsd/deid"
)

// deidSettings name the project key of de-identification. The key is a
// secret, so the setting is the file that holds it, never the key: as a
// flag, a variable or a config key alike, it names a file (a container
// mounts its secret as one).
type deidSettings struct {
	DeidKey string `name:"deid-key" placeholder:"FILE" help:"file holding the de-identification project key (at least 32 bytes, e.g. openssl rand -hex 32): the same original UID gets the same pseudonymous UID under one key"`
}

// minDeidKey is the shortest key accepted: 256 bits of HMAC key, as hex
// text or raw bytes.
const minDeidKey = 32

// maxDeidKey bounds what is read of the key file.
const maxDeidKey = 4096

// key reads the project key from its file, for deid.Options.Key; nil if
// no file is set. Surrounding white space in the file is not part of the
// key. A file that others than its owner may read is logged: the key
// links every pseudonym to its patient.
func (d *deidSettings) key(log *slog.Logger) ([]byte, error) {
	if d.DeidKey == "" {
		return nil, nil
	}
	f, err := os.Open(d.DeidKey)
	if err != nil {
		return nil, fmt.Errorf("deid_key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDeidKey+1))
	if err != nil {
		return nil, fmt.Errorf("deid_key: %w", err)
	}
	key := bytes.TrimSpace(b)
	switch {
	case len(b) > maxDeidKey:
		return nil, fmt.Errorf("deid_key %s: longer than %d bytes; is it the key?", d.DeidKey, maxDeidKey)
	case len(key) < minDeidKey:
		return nil, fmt.Errorf("deid_key %s: the key has %d bytes, fewer than %d: make one with openssl rand -hex 32", d.DeidKey, len(key), minDeidKey)
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("the de-identification key file is readable by others than its owner: chmod 600 it", "deid_key", d.DeidKey, "mode", st.Mode().Perm().String())
	}
	// deid.New checks the key as the de-identifications will use it.
	if _, err := deid.New(deid.Options{Key: key}); err != nil {
		return nil, fmt.Errorf("deid_key %s: %w", d.DeidKey, err)
	}
	return key, nil
}
