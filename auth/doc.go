// Package auth decides who is calling pacsd and what they may do.
//
// Every caller becomes a Principal: a name, how it was authenticated
// (Kind), the scopes it holds (read, write, delete, admin, research) and
// the issuers of patient IDs whose patients it may see. A principal with
// no issuer list sees every patient; one with a list sees only patients
// whose Issuer of Patient ID (0010,0021) is in it, and never patients
// without one.
//
// Principals come from three places:
//
//   - OIDC checks bearer tokens (JWTs) issued by an OpenID Connect
//     provider: signature against the provider's published keys, issuer,
//     audience and expiry. Scopes come from a configurable claim (scope
//     by default), allowed issuers from another (issuers).
//   - TokenFile checks long-lived machine tokens against a file of their
//     SHA-256 hashes (see ParseTokenFile for its grammar); CreateToken
//     makes a new one.
//   - AllowList decides which calling AE titles may associate over
//     DIMSE, from which addresses and with which client certificates, and
//     which issuers each may reach (see ParseAEEntry).
//
// Middleware puts the principal of an HTTP request in its context and
// answers 401 and 403 as RFC 6750 says. The TLS side (KeyPair,
// ServerTLSConfig, ClientTLSConfig, NewListener) builds the BCP 195
// configuration of PS3.15 Annex B.12 with certificates that are
// reloaded without a restart.
//
// Signature checking, key parsing and OpenID Connect discovery are done by
// github.com/coreos/go-oidc and github.com/go-jose/go-jose. The key set
// is this package's own (remoteKeys) because go-oidc's fetches the
// provider's keys again for every token whose signature fails, so that a
// stream of forged tokens becomes a stream of requests to the identity
// provider; ours fetches only for a key ID it has not seen, and at most
// once per MinRefresh.
//
// Tokens are secrets: nothing in this package logs them or puts them in
// an error.
package auth
