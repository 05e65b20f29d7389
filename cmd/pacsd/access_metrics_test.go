package main

import (
	"context"
	"errors"
	"iter"
	"testing"
)

// TestCountFailure: a query that ends in an error is counted for the
// metrics once, unless its caller went away.
func TestCountFailure(t *testing.T) {
	failing := func(yield func(int, error) bool) {
		if yield(1, nil) {
			yield(0, errors.New("index: disk I/O error"))
		}
	}
	for _, tc := range []struct {
		name   string
		cancel bool
		want   int
	}{{"failed", false, 1}, {"caller gone", true, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			var counted []string
			var seq iter.Seq2[int, error] = failing
			for range countFailure(ctx, seq, func(op string) { counted = append(counted, op) }) {
			}
			if len(counted) != tc.want || tc.want > 0 && counted[0] != "query" {
				t.Errorf("counted %v, want %d query failures", counted, tc.want)
			}
		})
	}
}
