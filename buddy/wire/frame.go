package wire

// The frames of the batch stream (PROTOCOL.md section 1.1): one long-lived
// HTTP/2 request carries request frames one way and reply frames the other.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxFrameHeader is the most bytes a frame's header (its lengths and
// status) takes.
const MaxFrameHeader = 2 * binary.MaxVarintLen64

// AppendFrame appends a request frame: the envelope's length (uvarint),
// then the envelope.
func AppendFrame(dst, envelope []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(envelope))), envelope...)
}

// AppendFrameHeader appends the header of a request frame whose envelope
// has size bytes; the envelope follows it.
func AppendFrameHeader(dst []byte, size int) []byte {
	return binary.AppendUvarint(dst, uint64(size))
}

// AppendReplyHeader appends the header of a reply frame: the status
// (uvarint; 200 for a sealed reply, else a rejection's HTTP status) and
// the length of what follows (uvarint).
func AppendReplyHeader(dst []byte, status, size int) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(dst, uint64(status)), uint64(size))
}

// ErrFrameTooLarge wraps the error of a frame whose declared length is
// above the reader's bound; nothing of its body was read.
var ErrFrameTooLarge = errors.New("tandem/wire: stream frame too large")

// ReadFrameSize reads a request frame's header and returns the length of
// the envelope that follows. A length above max is ErrFrameTooLarge; a
// malformed header ErrMalformed; the end of the stream before any byte
// io.EOF.
func ReadFrameSize(r io.ByteReader, max int) (int, error) {
	size, err := binary.ReadUvarint(r)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("%w: stream frame length truncated", ErrMalformed)
	case err != nil:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) {
			return 0, err // a deadline, not the peer's bytes
		}
		return 0, fmt.Errorf("%w: stream frame length: %v", ErrMalformed, err)
	case size > uint64(max):
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, size, max)
	}
	return int(size), nil
}

// ReadReplyHeader reads a reply frame's header: the status and the length
// of what follows, at most max (else ErrFrameTooLarge).
func ReadReplyHeader(r io.ByteReader, max int) (status, size int, err error) {
	st, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, 0, fmt.Errorf("reply frame status: %w", err)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, 0, fmt.Errorf("reply frame length: %w", err)
	}
	if st > 999 {
		return 0, 0, fmt.Errorf("%w: reply frame status %d", ErrMalformed, st)
	}
	if n > uint64(max) {
		return 0, 0, fmt.Errorf("%w: reply of %d bytes, at most %d", ErrFrameTooLarge, n, max)
	}
	return int(st), int(n), nil
}
