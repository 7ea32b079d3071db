package canvas

import (
	"errors"
	"fmt"
)

// Error codes, mapped to HTTP statuses in one place (package api).
const (
	EInvalid     = "invalid"      // bad input; nothing was changed
	ENotFound    = "not_found"    // no such resource
	EConflict    = "conflict"     // e.g. an idempotency key reused with another body
	ERateLimited = "rate_limited" // the client is sending too fast
	EUnavailable = "unavailable"  // a dependency (store, Redis) cannot be reached
	EInternal    = "internal"     // a bug; details are logged, never sent
)

// Error is an application error whose Message is safe to show to clients.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal for
// any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
