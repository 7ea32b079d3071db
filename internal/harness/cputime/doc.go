// Package cputime reads the process's CPU time. Benchmarks report CPU per
// operation next to wall time because machines are shared: wall time swings
// with other load, CPU spent mostly does not.
package cputime
