package core

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a
// manager's sweeper, a server).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
