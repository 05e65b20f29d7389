package route

import (
	"context"
	"crypto/rand"
	"log/slog"
	"math/big"
	"sync"

	"github.com/pacsd/pacsd/dimse"
)

// Commitments hands the Storage Commitment results that destinations
// report back to the DIMSE senders waiting for them. A destination
// reports on the association that asked while it is open, or on one it
// opens to pacsd: CommitResult implements dimse.CommitResultHandler for
// both, so pacsd's DIMSE server passes the results it receives here.
type Commitments struct {
	Logger *slog.Logger

	mu      sync.Mutex
	waiting map[string]chan *dimse.CommitResult
}

var _ dimse.CommitResultHandler = (*Commitments)(nil)

// expect registers a transaction before its request is sent; done
// unregisters it.
func (c *Commitments) expect(transactionUID string) (results <-chan *dimse.CommitResult, done func()) {
	ch := make(chan *dimse.CommitResult, 1)
	c.mu.Lock()
	if c.waiting == nil {
		c.waiting = map[string]chan *dimse.CommitResult{}
	}
	c.waiting[transactionUID] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.waiting, transactionUID)
		c.mu.Unlock()
	}
}

// CommitResult delivers a result to the sender waiting for it. A result
// nobody waits for (its sender gave up waiting, or pacsd restarted) is
// acknowledged and dropped: the instances it covers are sent again.
func (c *Commitments) CommitResult(ctx context.Context, a *dimse.Association, res *dimse.CommitResult) error {
	c.mu.Lock()
	ch := c.waiting[res.TransactionUID]
	c.mu.Unlock()
	if ch == nil {
		if c.Logger != nil {
			c.Logger.Warn("storage commitment result for no waiting request; dropped", "calling_ae", a.CallingAE(), "transaction_uid", res.TransactionUID)
		}
		return nil
	}
	select {
	case ch <- res:
	default: // a second result for one transaction
	}
	return nil
}

// newUID returns a UID under 2.25 (PS3.5 B.2) from 128 random bits.
func newUID() string {
	var b [16]byte
	rand.Read(b[:])
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}
