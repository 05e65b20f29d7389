package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/pacsd/pacsd/auth"
)

// tlsSettings are those of DICOM TLS (PS3.15 Annex B.12): the listener,
// and the certificate pacsd presents both to the peers that connect to it
// and to those it calls.
type tlsSettings struct {
	DIMSETLSAddr string `name:"dimse-tls-addr" placeholder:"HOST:PORT" help:"DICOM TLS listen address (2762 is the registered port); needs --tls-cert and --tls-key"`
	TLSCert      string `name:"tls-cert" placeholder:"FILE" help:"PEM certificate, with its chain, that pacsd presents as TLS server and client; it needs both the serverAuth and clientAuth extended key usages; reloaded on SIGHUP"`
	TLSKey       string `name:"tls-key" placeholder:"FILE" help:"PEM private key of --tls-cert; reloaded on SIGHUP"`
	TLSClientCA  string `name:"tls-client-ca" placeholder:"FILE" help:"PEM CA certificates: when set, peers of --dimse-tls-addr must present a client certificate they issued"`
	TLSCA        string `name:"tls-ca" placeholder:"FILE" help:"PEM CA certificates against which the peers pacsd calls over TLS are verified (default --tls-client-ca, else the system's)"`
}

func (t *tlsSettings) complete() error {
	switch {
	case (t.TLSCert == "") != (t.TLSKey == ""):
		return errors.New("tls_cert and tls_key go together: set both, or neither")
	case t.DIMSETLSAddr != "" && t.TLSCert == "":
		return errors.New("dimse_tls_addr needs a certificate and its key: set --tls-cert and --tls-key")
	}
	return nil
}

// tlsConfig is what the TLS settings load: the key pair, reloadable, and
// the CA pools.
type tlsConfig struct {
	keyPair   *auth.KeyPair  // nil without --tls-cert
	clientCAs *x509.CertPool // nil without --tls-client-ca
	roots     *x509.CertPool // of outgoing connections; nil: the system's
	client    *tls.Config    // of outgoing connections
	server    *tls.Config    // of the DIMSE TLS listener; nil without a key pair
}

// load reads the certificate, key and CA files. needClientCert says that
// the allow-list pins certificates by fingerprint, so that the listener
// asks clients for one even without --tls-client-ca.
func (t *tlsSettings) load(needClientCert bool) (*tlsConfig, error) {
	cfg := &tlsConfig{}
	if t.TLSCert != "" {
		kp, err := auth.LoadKeyPair(t.TLSCert, t.TLSKey)
		if err != nil {
			return nil, err
		}
		cfg.keyPair = kp
	}
	if t.TLSClientCA != "" {
		pool, err := auth.LoadCertPool(t.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls_client_ca: %w", err)
		}
		cfg.clientCAs, cfg.roots = pool, pool
	}
	if t.TLSCA != "" {
		pool, err := auth.LoadCertPool(t.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("tls_ca: %w", err)
		}
		cfg.roots = pool
	}
	cfg.client = auth.ClientTLSConfig(cfg.keyPair, cfg.roots)
	if cfg.keyPair != nil {
		mode := auth.NoClientCert
		switch {
		case cfg.clientCAs != nil:
			mode = auth.RequireClientCert
		case needClientCert:
			mode = auth.RequestClientCert
		}
		server, err := auth.ServerTLSConfig(cfg.keyPair, mode, cfg.clientCAs)
		if err != nil {
			return nil, err
		}
		cfg.server = server
	}
	return cfg, nil
}
