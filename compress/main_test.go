package compress

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: the zstd
// encoders and decoders must be used only in modes that start none.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
