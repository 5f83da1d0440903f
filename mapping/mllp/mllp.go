// Package mllp serves HL7 v2 over the Minimal Lower Layer Protocol: each
// message framed as 0x0B … 0x1C 0x0D, one message at a time per connection,
// in order, each answered by the acknowledgement its handler returns before
// the next is read. It bounds what a sender may hold: the message size, the
// time to send one message, the idle time between messages and the number of
// connections.
package mllp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"crs/mapping/hl7v2"
)

// Frame bytes.
const (
	StartBlock = 0x0B
	EndBlock   = 0x1C
	CR         = 0x0D
)

// Defaults of Server's bounds.
const (
	DefaultMaxMessage  = 1 << 20
	DefaultReadTimeout = 30 * time.Second
	DefaultIdleTimeout = 5 * time.Minute
	DefaultMaxConns    = 64
)

// ErrTooLarge is returned by ReadFrame for a message longer than allowed.
var ErrTooLarge = errors.New("mllp: message exceeds the maximum size")

// ErrFraming is returned by ReadFrame for bytes outside a frame or a frame
// not ended by 0x1C 0x0D.
var ErrFraming = errors.New("mllp: bad framing")

// ReadFrame reads one framed message and returns its content. Whitespace
// between frames is skipped; anything else outside a frame, or an end block
// not followed by CR, is ErrFraming; more than max bytes of content is
// ErrTooLarge. started, when not nil, is called once the start block is read
// (to tighten the read deadline).
func ReadFrame(r *bufio.Reader, max int, started func()) ([]byte, error) {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == StartBlock {
			break
		}
		if b != '\r' && b != '\n' && b != ' ' && b != '\t' {
			return nil, fmt.Errorf("%w: byte 0x%02x before the start block", ErrFraming, b)
		}
	}
	if started != nil {
		started()
	}
	var msg []byte
	for {
		chunk, err := r.ReadSlice(EndBlock)
		if len(msg)+len(chunk) > max+1 {
			return nil, ErrTooLarge
		}
		msg = append(msg, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		break
	}
	msg = msg[:len(msg)-1]
	b, err := r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if b != CR {
		return nil, fmt.Errorf("%w: end block not followed by CR", ErrFraming)
	}
	for _, c := range msg {
		if c == StartBlock {
			return nil, fmt.Errorf("%w: start block inside a message", ErrFraming)
		}
	}
	return msg, nil
}

// WriteFrame writes msg framed.
func WriteFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, 0, len(msg)+3)
	buf = append(buf, StartBlock)
	buf = append(buf, msg...)
	buf = append(buf, EndBlock, CR)
	_, err := w.Write(buf)
	return err
}

// Handler applies one message and returns the acknowledgement to send back.
type Handler func(ctx context.Context, msg []byte) []byte

// Server accepts MLLP connections and hands each message to Handler.
type Server struct {
	Handler     Handler
	MaxMessage  int           // bytes of one message (DefaultMaxMessage)
	ReadTimeout time.Duration // to receive a message once its start block came (DefaultReadTimeout)
	IdleTimeout time.Duration // between messages (DefaultIdleTimeout)
	MaxConns    int           // connections served at once; more are closed at once (DefaultMaxConns)
	Log         *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *Server) defaults() {
	if s.MaxMessage <= 0 {
		s.MaxMessage = DefaultMaxMessage
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = DefaultReadTimeout
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = DefaultIdleTimeout
	}
	if s.MaxConns <= 0 {
		s.MaxConns = DefaultMaxConns
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
}

// Serve accepts connections on ln until Close; it returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.defaults()
	s.mu.Lock()
	s.ln = ln
	s.conns = map[net.Conn]bool{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		full := len(s.conns) >= s.MaxConns
		if !full {
			s.conns[c] = true
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if full {
			s.Log.Warn("mllp: too many connections, closing", "remote", c.RemoteAddr().String(), "max", s.MaxConns)
			c.Close()
			continue
		}
		go s.serveConn(c)
	}
}

// Close stops accepting, closes every connection (a message being applied
// finishes first: its transaction is not cut) and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.ln == nil {
		s.mu.Unlock()
		return nil
	}
	s.cancel()
	err := s.ln.Close()
	for c := range s.conns {
		// Wake a reader; a handler in progress completes and its ACK write fails.
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	remote := c.RemoteAddr().String()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		if s.ctx.Err() != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		msg, err := ReadFrame(r, s.MaxMessage, func() { c.SetReadDeadline(time.Now().Add(s.ReadTimeout)) })
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
			case errors.As(err, &ne) && ne.Timeout():
				if s.ctx.Err() == nil {
					s.Log.Info("mllp: connection timed out", "remote", remote)
				}
			case errors.Is(err, ErrTooLarge), errors.Is(err, ErrFraming):
				s.Log.Warn("mllp: refused a message, closing the connection", "remote", remote, "err", err.Error())
				reason := err.Error()
				if errors.Is(err, ErrTooLarge) {
					reason = fmt.Sprintf("message exceeds %d bytes", s.MaxMessage)
				}
				c.SetWriteDeadline(time.Now().Add(s.ReadTimeout))
				WriteFrame(c, hl7v2.ACK(nil, hl7v2.AR, &hl7v2.Error{Code: hl7v2.CodeSegmentSequence, Reason: reason}, "", "", time.Now()))
			default:
				s.Log.Info("mllp: connection ended", "remote", remote, "err", err.Error())
			}
			return
		}
		// The handler is not cancelled by Close: a message being applied completes.
		ack := s.Handler(context.WithoutCancel(s.ctx), msg)
		c.SetWriteDeadline(time.Now().Add(s.ReadTimeout))
		if err := WriteFrame(c, ack); err != nil {
			s.Log.Info("mllp: could not send the ACK", "remote", remote, "err", err.Error())
			return
		}
	}
}
