package main

import (
	"testing"

	"github.com/tandemsession/tandem/internal/exampletest"
)

// TestExampleRuns builds this example, runs it and drives its pages.
func TestExampleRuns(t *testing.T) { exampletest.Drive(t, ".") }
