package chat

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an error for clients. The values are the contract's
// extensions.code strings.
type Code string

// The error codes of the public contract.
const (
	CodeUnauthenticated     Code = "UNAUTHENTICATED"
	CodeForbidden           Code = "FORBIDDEN"
	CodeNotFound            Code = "NOT_FOUND"
	CodeBadUserInput        Code = "BAD_USER_INPUT"
	CodeRateLimited         Code = "RATE_LIMITED"
	CodeUpstreamUnavailable Code = "UPSTREAM_UNAVAILABLE"
	CodeInternal            Code = "INTERNAL_SERVER_ERROR"
)

// Error is an error meant for a client: Message is safe to show, Code says
// what kind of failure it is. Err, when set, is the underlying cause; it is
// logged but never shown.
type Error struct {
	Code    Code
	Message string
	Err     error
	// RetryAfter, for CodeRateLimited, is when the request may succeed
	// if retried (extensions.retryAfter, and Retry-After over HTTP);
	// zero when unknown.
	RetryAfter time.Duration
}

// Error returns the client message, followed by the cause when there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and formatted client message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the given code and client message whose cause
// is err. The cause is for logs only.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrNotFound is returned for an object that does not exist or belongs to
// another user: the two are deliberately indistinguishable.
var ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none. ErrorCode(nil) is "".
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or a generic message when there is none, so that internal details
// never reach a client.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal server error"
}
