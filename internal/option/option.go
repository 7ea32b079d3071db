// Package option is the error that components' Options.Validate methods
// return: which option, its value and why it is refused. The component's
// New refuses the same options with the same error; config.Parse calls
// Validate before anything opens and names the setting (flag and
// variable) the option came from, so a bad setting is one line at start.
package option

import "fmt"

// Error is one refused option.
type Error struct {
	Component string // "gateway", "store", "relay", "api"
	Field     string // the Options field, e.g. "QueueLen"
	Value     any    // the value refused
	Reason    string // why, phrased to follow the value: "must be at least 2"
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s %v %s", e.Component, e.Field, e.Value, e.Reason)
}

// Checker collects the first refusal of one component's options.
type Checker struct {
	Component string
	err       *Error
}

// Check records field's refusal when ok is false and no earlier check failed.
func (c *Checker) Check(ok bool, field string, value any, reason string, args ...any) {
	if ok || c.err != nil {
		return
	}
	c.err = &Error{Component: c.Component, Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

// Name records field's refusal when validate (a name rule) refuses value.
func (c *Checker) Name(field, value string, validate func(string) error) {
	if err := validate(value); err != nil {
		c.Check(false, field, fmt.Sprintf("%q", value), "%s", err.Error())
	}
}

// Err is the first refusal, or nil.
func (c *Checker) Err() error {
	if c.err == nil {
		return nil
	}
	return c.err
}
