// Package httplimit bounds what HTTP clients can hold of a server: the
// connections it keeps open, how long a request's header may take to
// arrive, how long a kept-alive connection may sit idle, and how slowly a
// request body may be sent or a response taken.
//
// net/http offers total timeouts, which do not fit an archive: a STOW-RS of
// a whole study or a WADO-RS of a large series runs for minutes, and a
// ReadTimeout also cancels the context of a handler still writing its
// response. So bodies are bounded by progress instead — each window of
// time must carry a minimum of bytes — and the number of connections by a
// cap that makes room for a new connection by closing the one idle the
// longest, so that a thousand idle clients cannot keep a health check
// from being answered. net/http has no cap of its own, and
// golang.org/x/net/netutil's LimitListener only makes new connections
// wait, behind the idle ones.
//
// Every response also carries X-Content-Type-Options: nosniff: no
// response of pacsd is a page whose type a browser should guess.
package httplimit
