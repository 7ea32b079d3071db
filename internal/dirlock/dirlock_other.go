//go:build !unix

package dirlock

// Lock is a no-op where flock(2) does not exist: pixelflow is built and
// supported on Linux; elsewhere nothing keeps two processes apart.
type Lock struct{}

// Acquire does nothing on this platform.
func Acquire(dir string) (*Lock, error) { return &Lock{}, nil }

// AcquireFile does nothing on this platform.
func AcquireFile(path string) (*Lock, error) { return &Lock{}, nil }

// Release does nothing on this platform.
func (l *Lock) Release() error { return nil }
