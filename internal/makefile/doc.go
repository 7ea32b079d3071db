// Package makefile holds the tests of the repository's Makefile, which is
// the first thing a newcomer runs: make alone prints the targets and
// starts nothing, and make chaos refuses a SCENARIO no drill has. It has
// no code; the tests run make in the repository root.
package makefile
