// Package deploy holds what it takes to run pacsd in production: a
// hardened systemd unit (systemd/), example configurations for one node
// on a filesystem and SQLite (single-node/) and for two nodes sharing an
// S3 bucket and PostgreSQL (two-nodes/), and a Grafana dashboard of
// pacsd's metrics (grafana/). README.md is the guide.
//
// The package has no code, only tests that keep these files true: the
// unit passes `systemd-analyze verify` and its security review, each
// example configuration starts a real pacsd that stores and finds an
// image, and every query of the dashboard names metrics and labels that
// package metrics registers.
package deploy
