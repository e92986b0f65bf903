package main

import (
	"math"
	"testing"
)

// TestMaxFor checks that the log-uniform sizes from minSize to maxFor(mean)
// have that mean, for means from just above minSize to 1 GiB.
func TestMaxFor(t *testing.T) {
	for _, mean := range []float64{1.5 * minSize, 10 * 4096, 1 << 20, 64 << 20, 1 << 30} {
		hi := maxFor(mean)
		got := (hi - minSize) / math.Log(hi/minSize)
		if !(math.Abs(got-mean) <= mean*1e-6) { // NaN fails too
			t.Errorf("maxFor(%.0f) = %.0f, whose mean is %.0f", mean, hi, got)
		}
	}
}
