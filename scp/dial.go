package scp

import (
	"context"
	"crypto/tls"

	"github.com/pacsd/pacsd/dimse"
)

// Dial opens an association to r with d, over TLS when r is marked so:
// tlsConfig then gives the certificate presented and the roots the remote
// is verified against (nil: TLS 1.2 or later against the system's roots,
// without a client certificate). The TLS handshake and the association
// request take at most 30 seconds.
func Dial(ctx context.Context, d *dimse.Dialer, r Remote, tlsConfig *tls.Config) (*dimse.Association, error) {
	return dialRemote(ctx, d, r, tlsConfig)
}
