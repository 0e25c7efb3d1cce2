package llm_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// stream, timer and fake server must have stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
